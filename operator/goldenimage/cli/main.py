"""The `goldenimage` command."""

from __future__ import annotations

import argparse
import logging
import random
import sys
from collections.abc import Callable

from ..api import crdgen


def _crds(args: argparse.Namespace) -> int:
    sys.stdout.write("---\n".join(crdgen.files().values()))
    return 0


def _operator(args: argparse.Namespace) -> int:
    import kopf

    from .. import handlers  # noqa: F401 - registers the handlers
    from ..config import Config, ConfigurationError

    try:
        Config.from_env()
    except ConfigurationError as exc:
        print(f"goldenimage operator: {exc}", file=sys.stderr)
        return 2
    kopf.configure(verbose=args.verbose)
    # SDK wire logs would drown the operator's own; they stay at warnings.
    for noisy in ("botocore", "boto3", "urllib3", "azure", "google"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    kopf.run(
        standalone=not args.peering,
        peering_name=args.peering,
        # Replicas of one Deployment share their arguments: each draws its own priority, as
        # peers of equal priority would all pause.
        priority=args.priority if args.priority is not None else random.SystemRandom().randint(1, 999_999),
        clusterwide=not args.namespace,
        namespaces=args.namespace or (),
        liveness_endpoint=args.liveness,
    )
    return 0


def _operator_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-n", "--namespace", action="append", help="watch only this namespace (repeatable)")
    parser.add_argument("--peering", help="KopfPeering name, for several replicas (default: standalone)")
    parser.add_argument("--priority", type=int, help="peering priority of this replica (default: a random one)")
    parser.add_argument("--liveness", default=None, help="liveness endpoint, e.g. http://0.0.0.0:8080/healthz")
    parser.add_argument("--verbose", action="store_true")


def _no_arguments(parser: argparse.ArgumentParser) -> None:
    pass


Command = tuple[str, Callable[[argparse.Namespace], int], Callable[[argparse.ArgumentParser], None]]

# name -> (help, run, add its arguments)
COMMANDS: dict[str, Command] = {
    "operator": (
        "run the operator (configured by GOLDENIMAGE_* environment variables)",
        _operator,
        _operator_arguments,
    ),
    "crds": ("print the CustomResourceDefinitions (pipe into `kubectl apply -f -`)", _crds, _no_arguments),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="goldenimage", description="GoldenImage operator")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (help_text, _, add_arguments) in COMMANDS.items():
        add_arguments(sub.add_parser(name, help=help_text))
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    return COMMANDS[args.command][1](args)
