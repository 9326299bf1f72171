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
    parser.add_argument(
        "-n",
        "--namespace",
        action="append",
        help="Watch only this namespace; repeat it for several. Every namespace is watched by default.",
    )
    parser.add_argument(
        "--peering", help="KopfPeering name, for running several replicas; the operator runs standalone without it."
    )
    parser.add_argument("--priority", type=int, help="Peering priority of this replica; a random one by default.")
    parser.add_argument(
        "--liveness", default=None, help="Liveness endpoint to serve, e.g. http://0.0.0.0:8080/healthz."
    )
    parser.add_argument("--verbose", action="store_true", help="Log debug messages too.")


def _no_arguments(parser: argparse.ArgumentParser) -> None:
    pass


Command = tuple[str, Callable[[argparse.Namespace], int], Callable[[argparse.ArgumentParser], None]]

# name -> (help, run, add its arguments)
COMMANDS: dict[str, Command] = {
    "operator": (
        "Runs the operator, configured by GOLDENIMAGE_* environment variables.",
        _operator,
        _operator_arguments,
    ),
    "crds": (
        "Prints the CustomResourceDefinitions, e.g. to pipe into `kubectl apply -f -`.",
        _crds,
        _no_arguments,
    ),
}


def _help_flag(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """argparse's own -h says "show this help message and exit"; this one says it as a sentence."""
    parser.add_argument("-h", "--help", action="help", help="Show this help and exit.")
    return parser


def parser() -> argparse.ArgumentParser:
    top = _help_flag(
        argparse.ArgumentParser(
            prog="goldenimage",
            description="The GoldenImage operator, which builds, validates and publishes golden machine images.",
            add_help=False,
        )
    )
    sub = top.add_subparsers(dest="command", metavar="COMMAND", help="The command to run, one of the following.")
    for name, (help_text, _, add_arguments) in COMMANDS.items():
        add_arguments(_help_flag(sub.add_parser(name, help=help_text, description=help_text, add_help=False)))
    return top


def main(argv: list[str] | None = None) -> int:
    cli = parser()
    args = cli.parse_args(argv)
    if args.command is None:
        cli.print_help()
        return 2
    return COMMANDS[args.command][1](args)
