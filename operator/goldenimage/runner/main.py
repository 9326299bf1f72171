"""The `goldenimage-runner` command, run inside the operator's Jobs."""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Callable, MutableMapping

from ..api import labels
from ..api.result import Result, encode
from . import build, validate
from .scrub import Scrubber

EXIT_CRASHED = 1
COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {"build": build.run, "validate": validate.run}


def unwrap_secret_env(environ: MutableMapping[str, str]) -> list[str]:
    """Move the credentials Secret's keys to their own names, for Packer and the cloud SDKs;
    the names moved (all to be masked)."""
    moved = []
    for name in [n for n in environ if n.startswith(labels.SECRET_ENV_PREFIX)]:
        plain = name.removeprefix(labels.SECRET_ENV_PREFIX)
        if plain:
            environ[plain] = environ.pop(name)
            moved.append(plain)
    return moved


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="goldenimage-runner", description="Runs inside the operator's Jobs")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    build.add_arguments(sub.add_parser("build", help="validate and build a Packer template, report the artifacts"))
    validate.add_arguments(sub.add_parser("validate", help="boot an artifact, run the checks, report them"))
    args = parser.parse_args(argv)
    # Every key of the credentials Secret is a secret, whether or not the runner knows its name.
    args.sensitive_env = [*getattr(args, "sensitive_env", []), *unwrap_secret_env(os.environ)]
    try:
        return COMMANDS[args.command](args)
    except Exception as exc:
        # Whatever went wrong, the operator reads why from the result, not "the Job left none".
        scrub = Scrubber.from_env(getattr(args, "sensitive_env", []))
        print(scrub(traceback.format_exc()), file=sys.stderr, flush=True)
        message = scrub(f"the runner failed: {type(exc).__name__}: {exc}")
        result = Result(kind=args.command, ok=False, error_class="Retryable", message=message)
        args.result.write_text(encode(result))
        return EXIT_CRASHED


if __name__ == "__main__":
    sys.exit(main())
