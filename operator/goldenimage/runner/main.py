"""The `goldenimage-runner` command, run inside the operator's Jobs."""

from __future__ import annotations

import argparse
import sys

from . import build, validate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="goldenimage-runner", description="Runs inside the operator's Jobs")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    build.add_arguments(sub.add_parser("build", help="validate and build a Packer template, report the artifacts"))
    validate.add_arguments(sub.add_parser("validate", help="boot an artifact, run the checks, report them"))
    args = parser.parse_args(argv)
    if args.command == "build":
        return build.run(args)
    if args.command == "validate":
        return validate.run(args)
    parser.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())
