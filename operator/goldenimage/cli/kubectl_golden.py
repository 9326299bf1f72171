"""The kubectl plugin `kubectl golden`."""

from __future__ import annotations

import argparse


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kubectl golden", description="Golden image channels and builds")
    parser.add_subparsers(dest="command", metavar="COMMAND", title="commands (none yet)")
    parser.parse_args(argv)
    parser.print_help()
    return 2
