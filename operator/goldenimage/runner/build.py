"""`goldenimage-runner build`: validate the template, run `packer build`, report the artifacts.

Exit codes: 0 built; 3 the template or its inputs are invalid (permanent: retrying cannot help);
4 the build failed (retryable); 5 the runner was called wrongly (permanent); 143 terminated.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from ..clouds.aws import Aws
from ..clouds.base import CloudError
from ..config import Config
from ..packer import tags
from . import packer
from .result import Artifact, Result, encode
from .scrub import Scrubber
from .signals import Stop

EXIT_OK, EXIT_INVALID, EXIT_FAILED, EXIT_USAGE, EXIT_TERMINATED = 0, 3, 4, 5, 143


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--template", type=Path, required=True, help="the Packer HCL2 template")
    parser.add_argument("--inputs", type=Path, required=True, help="directory of the build's input files")
    parser.add_argument("--work-dir", type=Path, required=True, help="writable scratch directory")
    parser.add_argument("--result", type=Path, required=True, help="where to write the result JSON")
    parser.add_argument("--var", action="append", default=[], metavar="NAME=VALUE", help="a Packer variable")
    parser.add_argument(
        "--user-template",
        action="store_true",
        help="the template is the user's own: pass only the variables it declares",
    )
    parser.add_argument(
        "--sensitive-env",
        action="append",
        default=[],
        metavar="NAME",
        help="an environment variable whose value must never be printed or reported",
    )
    parser.add_argument("--cloud", choices=("aws", "gcp", "azure"), help="the target's cloud")
    parser.add_argument("--region", help="the region the build runs in")
    parser.add_argument("--target", help="the target's name")
    parser.add_argument(
        "--share-org",
        action="append",
        default=[],
        metavar="ARN",
        help="an AWS Organizations organization or OU to share the AMIs with, after the build",
    )
    parser.add_argument("--packer", default=os.environ.get("PACKER", "packer"))


def run(args: argparse.Namespace) -> int:
    with Stop() as stop:
        return _run(args, stop)


def _run(args: argparse.Namespace, stop: Stop) -> int:
    started = time.monotonic()
    scrub = Scrubber.from_env(args.sensitive_env)
    # Packer runs in the work directory: every path handed to it must not depend on that.
    for name in ("template", "inputs", "work_dir", "result"):
        setattr(args, name, getattr(args, name).absolute())

    def say(line: str) -> None:
        print(line, flush=True)

    def finish(result: Result, code: int) -> int:
        result = result.model_copy(update={"duration_seconds": round(time.monotonic() - started, 1)})
        args.result.write_text(encode(result))
        say(f"goldenimage-runner: {'built' if result.ok else 'failed'}: {result.message or len(result.artifacts)}")
        return code

    def stopped() -> int:
        message = f"stopped ({stop.received}) before the build started"
        return finish(Result(ok=False, error_class="Retryable", message=message), EXIT_TERMINATED)

    variables = {}
    for item in args.var:
        name, sep, value = item.partition("=")
        if not sep or not name:
            return finish(
                Result(ok=False, error_class="Permanent", message=f"--var {item!r} is not NAME=VALUE"),
                EXIT_USAGE,
            )
        variables[name] = value

    work: Path = args.work_dir
    manifest = work / "manifest.json"
    manifest.unlink(missing_ok=True)
    for sub in ("home", "tmp", "packer-cache"):
        (work / sub).mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "CHECKPOINT_DISABLE": "1",  # no calls home from inside a build
        "PACKER_CACHE_DIR": os.environ.get("PACKER_CACHE_DIR", str(work / "packer-cache")),
        "TMPDIR": os.environ.get("TMPDIR", str(work / "tmp")),
    }
    variables |= {"inputs_dir": str(args.inputs), "manifest_path": str(manifest)}

    if not args.template.is_file():
        return finish(
            Result(ok=False, error_class="Permanent", message=f"template {args.template} not found"),
            EXIT_USAGE,
        )
    template = args.template
    if args.user_template:
        # A directory of its own, so the user's file is the only template Packer loads. Our
        # variables go as PKR_VAR_* environment, which Packer ignores for undeclared variables.
        directory = work / "template"
        directory.mkdir(exist_ok=True)
        template = directory / "main.pkr.hcl"
        shutil.copyfile(args.template, template)
        env |= {f"PKR_VAR_{k}": v for k, v in variables.items()}
        variables = {}

    if stop.received:
        return stopped()
    version = packer.version(args.packer, env)
    say(f"goldenimage-runner: Packer {version}, template {args.template.name}")
    code, output = packer.validate(args.packer, template, variables, env, work)
    if code != 0:
        return finish(
            Result(
                ok=False,
                error_class="Permanent",
                packer_version=version,
                message="invalid template: " + scrub(output),
            ),
            EXIT_INVALID,
        )

    if stop.received:
        return stopped()
    watch = _temporary_group_tagger(args, variables.get("attempt") or env.get("PKR_VAR_attempt", ""), say)
    build = packer.Build(args.packer, template, variables, env, work, scrub, say, watch)

    def forward(signum: int) -> None:
        say(f"goldenimage-runner: received {stop.received}; asking Packer to clean up and stop")
        build.terminate(signum)

    stop.on_signal = forward
    if stop.received:
        build.cancelled.set()
    out = build.run()

    if out.cancelled and out.returncode != 0:
        errors = "; ".join(dict.fromkeys(out.errors))
        return finish(
            Result(
                ok=False,
                error_class="Retryable",
                packer_version=version,
                message="the build was stopped (SIGTERM); Packer cleaned up" + (f": {errors}" if errors else ""),
            ),
            EXIT_TERMINATED,
        )
    if out.returncode != 0:
        message = "; ".join(dict.fromkeys(out.errors)) or "\n".join(out.tail[-10:])
        return finish(
            Result(
                ok=False,
                error_class="Retryable",
                packer_version=version,
                message=f"packer build failed: {message}",
            ),
            EXIT_FAILED,
        )
    run_uuid, ids = ("", out.artifact_ids)
    if manifest.exists():
        run_uuid, ids = packer.manifest_artifacts(manifest)
    artifacts = [Artifact(region=r, id=i) for r, i in packer.split_artifact_ids(ids)]
    if artifacts and args.share_org:
        try:
            _share(args, artifacts, say)
        except CloudError as exc:
            message = f"built, but sharing with {', '.join(args.share_org)} failed: {exc}"
            return finish(
                Result(ok=False, error_class="Retryable", packer_version=version, message=message), EXIT_FAILED
            )
    if not artifacts:
        return finish(
            Result(
                ok=False,
                error_class="Retryable",
                packer_version=version,
                message="Packer succeeded but reported no artifact",
            ),
            EXIT_FAILED,
        )
    return finish(Result(ok=True, artifacts=artifacts, packer_version=version, run_uuid=run_uuid), EXIT_OK)


def _aws() -> Aws:
    """The AWS adapter with the Job's own identity (its environment)."""
    return Aws(endpoint_url=Config.from_env().aws_endpoint_url)


_TEMPORARY_GROUP = re.compile(r"Creating temporary security group for this instance: (packer_[0-9a-f-]+)")


def _temporary_group_tagger(
    args: argparse.Namespace, attempt: str, say: Callable[[str], None]
) -> Callable[[str], None] | None:
    """Packer 1.6.6 leaves its temporary security group untagged; tag it with the build id as
    soon as it appears, so that a sweep finds it even after a SIGKILL."""
    build_id = os.environ.get("GOLDENIMAGE_BUILD_ID")
    if args.cloud != "aws" or not args.region or not build_id:
        return None
    aws = _aws()
    labels = {tags.BUILD_ID: build_id, tags.MANAGED_BY: tags.MANAGER}
    if args.target:
        labels[tags.TARGET] = args.target
    if attempt:
        labels[tags.ATTEMPT] = attempt

    def watch(line: str) -> None:
        match = _TEMPORARY_GROUP.search(line)
        if match is None:
            return
        try:
            aws.tag_security_group(args.region, match.group(1), labels)
        except CloudError as exc:
            say(f"goldenimage-runner: could not tag {match.group(1)}: {exc}")

    return watch


def _share(args: argparse.Namespace, artifacts: list[Artifact], say: Callable[[str], None]) -> None:
    """Share the AMIs with organizations and OUs (after the build: Packer 1.6.6 cannot)."""
    aws = _aws()
    for artifact in artifacts:
        aws.share(artifact.region, artifact.id, args.share_org)
        say(f"goldenimage-runner: shared {artifact.id} in {artifact.region} with {', '.join(args.share_org)}")
