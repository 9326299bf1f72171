"""The `goldenimage-dev` command: the local demo and a local cluster to try things on."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path


def _local_cluster(args: argparse.Namespace) -> int:
    from .cluster import LocalCluster

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


def _demo(args: argparse.Namespace) -> int:
    from . import demo

    return demo.main(Path(args.dir), wait=not args.no_wait)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="goldenimage-dev", description="The GoldenImage operator's local stack")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = sub.add_parser("demo", help="the whole loop locally: build, boot-test, promote, roll back (see the README)")
    demo.add_argument(
        "--dir",
        default=".local/demo",
        help="where the demo keeps its files and logs: a new or empty directory, or an earlier demo's",
    )
    demo.add_argument("--no-wait", action="store_true", help="stop everything when the story is told")
    demo.set_defaults(run=_demo)
    cluster = sub.add_parser("local-cluster", help="run a local control plane with the CRDs and the pod executor")
    cluster.set_defaults(run=_local_cluster)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    code: int = args.run(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
