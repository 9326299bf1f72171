"""The `goldenimage` command."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Callable

from ..api import crdgen


def _crds(args: argparse.Namespace) -> int:
    sys.stdout.write("---\n".join(crdgen.files().values()))
    return 0


def _local_cluster(args: argparse.Namespace) -> int:
    from ..local.cluster import LocalCluster

    cluster = LocalCluster.start(build=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        print(f"local cluster is up: export KUBECONFIG={cluster.kubeconfig}", flush=True)
        print("stop it with Ctrl-C", flush=True)
        stop.wait()
    finally:
        cluster.stop()
    return 0


COMMANDS: dict[str, tuple[str, Callable[[argparse.Namespace], int]]] = {
    "crds": ("print the CustomResourceDefinitions (pipe into `kubectl apply -f -`)", _crds),
    "local-cluster": ("run a local control plane with the CRDs and pod executor", _local_cluster),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="goldenimage", description="GoldenImage operator")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (help_text, _) in COMMANDS.items():
        sub.add_parser(name, help=help_text)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    return COMMANDS[args.command][1](args)
