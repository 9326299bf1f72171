"""`goldenimage-runner build`: validate the template, run `packer build`, report the artifacts.

Exit codes: 0 built; 3 the template or its inputs are invalid (permanent: retrying cannot help);
4 the build failed (retryable); 5 the runner was called wrongly (permanent); 143 terminated.
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..api.errors import CloudError
from ..api.goldenimage import GoldenImageSpec, Target
from ..api.result import Result, encode
from ..clouds import registry
from ..clouds.adapters import Adapters
from ..clouds.base import CloudApi, PackerReport
from ..config import Config
from ..packer.bundle import RECIPE
from . import packer
from .scrub import Scrubber
from .signals import Stop

EXIT_OK, EXIT_INVALID, EXIT_FAILED, EXIT_USAGE, EXIT_TERMINATED = 0, 3, 4, 5, 143
# Lines of Packer's output a failure's message quotes.
TAIL_LINES = 8


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--template", type=Path, required=True, help="the Packer HCL2 template")
    parser.add_argument("--inputs", type=Path, required=True, help="directory of the build's input files")
    parser.add_argument("--work-dir", type=Path, required=True, help="writable scratch directory")
    parser.add_argument("--result", type=Path, required=True, help="where to write the result JSON")
    parser.add_argument("--target", required=True, help="the target of the build's recipe this Job builds")
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


class UsageError(Exception):
    """The runner was called wrongly: a permanent failure."""


@dataclass
class Run:
    """One build: what it was asked, and how it reports."""

    args: argparse.Namespace
    stop: Stop
    scrub: Scrubber
    started: float

    def say(self, line: str) -> None:
        print(line, flush=True)

    def finish(self, result: Result, code: int) -> int:
        result = result.model_copy(update={"duration_seconds": round(time.monotonic() - self.started, 1)})
        self.args.result.write_text(encode(result))
        self.say(f"goldenimage-runner: {'built' if result.ok else 'failed'}: {result.message or len(result.artifacts)}")
        return code

    def failed(self, message: str, code: int, *, permanent: bool = False, packer_version: str = "") -> int:
        error_class = "Permanent" if permanent else "Retryable"
        result = Result(ok=False, error_class=error_class, packer_version=packer_version, message=message)
        return self.finish(result, code)

    def stopped(self) -> int:
        return self.failed(f"stopped ({self.stop.received}) before the build started", EXIT_TERMINATED)


def run(args: argparse.Namespace) -> int:
    with Stop() as stop:
        build = Run(args, stop, Scrubber.from_env(args.sensitive_env), time.monotonic())
        try:
            return _run(build)
        except UsageError as exc:
            return build.failed(str(exc), EXIT_USAGE, permanent=True)


def _variables(items: list[str]) -> dict[str, str]:
    variables = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise UsageError(f"--var {item!r} is not NAME=VALUE")
        variables[name] = value
    return variables


def _target(inputs: Path, name: str) -> Target:
    try:
        return GoldenImageSpec.model_validate_json((inputs / RECIPE).read_text()).target(name)
    except (OSError, ValueError, LookupError) as exc:
        raise UsageError(f"the build's recipe has no usable target {name!r}: {exc}") from exc


@dataclass(frozen=True)
class Invocation:
    """How Packer is run for this build."""

    template: Path  # the template Packer loads (a copy, for a user's own template)
    variables: dict[str, str]  # passed as -var (empty for a user's template: they go in env)
    env: dict[str, str]
    work: Path
    manifest: Path
    attempt: str


def _run(build: Run) -> int:
    target, invocation = _prepare(build.args)
    if build.stop.received:
        return build.stopped()
    args, env = build.args, invocation.env
    version = packer.version(args.packer, env)
    build.say(f"goldenimage-runner: Packer {version}, template {args.template.name}")
    code, output = packer.validate(args.packer, invocation.template, invocation.variables, env, invocation.work)
    if code != 0:
        return build.failed(
            "invalid template: " + build.scrub(output), EXIT_INVALID, permanent=True, packer_version=version
        )
    if build.stop.received:
        return build.stopped()
    cloud = _cloud(target)
    watch = (
        cloud.build_watcher(target, os.environ.get("GOLDENIMAGE_BUILD_ID", ""), invocation.attempt) if cloud else None
    )
    out = _packer_build(
        build, invocation.template, invocation.variables, env, invocation.work, _tolerant(watch, build.say)
    )
    if out.returncode != 0:
        return _build_failed(build, out, version)
    return _report(build, target, cloud, out, invocation.manifest, version)


def _prepare(args: argparse.Namespace) -> tuple[Target, Invocation]:
    """The target and how Packer runs for it; the work directory laid out. A UsageError when the
    runner was called wrongly."""
    # Packer runs in the work directory: every path handed to it must not depend on that.
    for name in ("template", "inputs", "work_dir", "result"):
        setattr(args, name, getattr(args, name).absolute())
    variables = _variables(args.var)
    if not args.template.is_file():
        raise UsageError(f"template {args.template} not found")
    target = _target(args.inputs, args.target)
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
    template = args.template
    attempt = variables.get("attempt", "")
    if args.user_template:
        # A directory of its own, so the user's file is the only template Packer loads. Our
        # variables go as PKR_VAR_* environment, which Packer ignores for undeclared variables.
        directory = work / "template"
        directory.mkdir(exist_ok=True)
        template = directory / "main.pkr.hcl"
        shutil.copyfile(args.template, template)
        env |= {f"PKR_VAR_{k}": v for k, v in variables.items()}
        variables = {}
    return target, Invocation(template, variables, env, work, manifest, attempt)


def _build_failed(build: Run, out: packer.BuildOutput, version: str) -> int:
    errors = "; ".join(dict.fromkeys(out.errors))
    if out.cancelled:
        message = "the build was stopped (SIGTERM); Packer cleaned up" + (f": {errors}" if errors else "")
        return build.failed(message, EXIT_TERMINATED, packer_version=version)
    # Packer's error says which step failed; the step's own last words (what the machine printed,
    # else Packer's last lines) say why.
    said = " | ".join(line.strip() for line in (out.remote or out.tail)[-TAIL_LINES:] if line.strip())
    message = f"{errors}; last output: {said}" if errors else said
    return build.failed(f"packer build failed: {message}", EXIT_FAILED, packer_version=version)


def _report(
    build: Run, target: Target, cloud: CloudApi | None, out: packer.BuildOutput, manifest: Path, version: str
) -> int:
    """The artifacts of a successful `packer build`, once the cloud's work after a build is done."""
    ids = out.artifact_ids
    run_uuid = ""
    if manifest.exists():
        run_uuid, ids = packer.manifest_artifacts(manifest)
    artifacts = registry.of(target).artifacts(target, PackerReport(tuple(ids), tuple(out.artifact_strings)))
    if not artifacts:
        return build.failed("Packer succeeded but reported no artifact", EXIT_FAILED, packer_version=version)
    try:
        for line in cloud.after_build(target, [(a.region, a.id) for a in artifacts]) if cloud else []:
            build.say(f"goldenimage-runner: {line}")
    except CloudError as exc:
        return build.failed(f"built, but the work after the build failed: {exc}", EXIT_FAILED, packer_version=version)
    return build.finish(Result(ok=True, artifacts=artifacts, packer_version=version, run_uuid=run_uuid), EXIT_OK)


def _cloud(target: Target) -> CloudApi | None:
    """The target's cloud adapter with the Job's own identity (its environment)."""
    return Adapters(Config.from_env()).get(target.cloud)


def _tolerant(watch: Callable[[str], None] | None, say: Callable[[str], None]) -> Callable[[str], None] | None:
    """A watcher whose cloud errors are reported, never fatal to the build."""
    if watch is None:
        return None

    def safely(line: str) -> None:
        try:
            watch(line)
        except CloudError as exc:
            say(f"goldenimage-runner: {exc}")

    return safely


def _packer_build(
    build: Run,
    template: Path,
    variables: dict[str, str],
    env: dict[str, str],
    work: Path,
    watch: Callable[[str], None] | None,
) -> packer.BuildOutput:
    """`packer build`, with a stop signal forwarded so that Packer cleans up what it created."""
    process = packer.Build(build.args.packer, template, variables, env, work, build.scrub, build.say, watch)

    def forward(signum: int) -> None:
        build.say(f"goldenimage-runner: received {build.stop.received}; asking Packer to clean up and stop")
        process.terminate(signum)

    build.stop.on_signal = forward
    if build.stop.received:
        process.cancelled.set()
    return process.run()
