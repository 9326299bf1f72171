"""`goldenimage-runner build`: validate the template, run `packer build`, report the artifacts.

Exit codes: 0 built; 3 the template or its inputs are invalid (permanent: retrying cannot help);
4 the build failed (retryable); 5 the runner was called wrongly (permanent); 143 terminated.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import sys
import time
from pathlib import Path
from types import FrameType

from . import packer
from .result import Artifact, Result, encode
from .scrub import Scrubber

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
    parser.add_argument("--packer", default=os.environ.get("PACKER", "packer"))


def run(args: argparse.Namespace) -> int:
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
        # A directory of its own, so the user's file is the only template Packer loads.
        directory = work / "template"
        directory.mkdir(exist_ok=True)
        template = directory / "main.pkr.hcl"
        shutil.copyfile(args.template, template)
        declared = set(re.findall(r'variable\s+"([A-Za-z_][\w-]*)"', template.read_text()))
        variables = {k: v for k, v in variables.items() if k in declared}

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

    build = packer.Build(args.packer, template, variables, env, work, scrub, say)

    def forward(signum: int, frame: FrameType | None) -> None:
        say(f"goldenimage-runner: received {signal.Signals(signum).name}; asking Packer to clean up and stop")
        build.terminate(signum)

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, forward)
    out = build.run()

    if out.cancelled:
        return finish(
            Result(
                ok=False,
                error_class="Retryable",
                packer_version=version,
                message="the build was stopped (SIGTERM) and Packer cleaned up",
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="goldenimage-runner build")
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
