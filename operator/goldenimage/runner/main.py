"""The `goldenimage-runner` command, run inside build and validation Jobs."""

from __future__ import annotations

import argparse


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="goldenimage-runner", description="Runs inside the operator's Jobs")
    parser.add_subparsers(dest="command", metavar="COMMAND", title="commands (none yet)")
    parser.parse_args(argv)
    parser.print_help()
    return 2
