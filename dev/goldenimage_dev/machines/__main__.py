"""`python -m goldenimage_dev.machines build-images | lab -- CMD ARGS...`"""

from __future__ import annotations

import argparse
import sys


def _build_images(args: argparse.Namespace) -> int:
    from . import images
    from .lab import Lab

    lab = Lab.current()
    for image, seconds in images.build_all(apt_proxy=lab.apt_proxy if lab else None):
        print(f"{image.recipe.variant}: {image.rootfs} ({seconds:.1f}s)", flush=True)
    return 0


def _lab(args: argparse.Namespace) -> int:
    from . import lab

    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    return lab.run(command)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m goldenimage_dev.machines", description=__doc__)
    sub = parser.add_subparsers(dest="what", metavar="COMMAND")
    build = sub.add_parser("build-images", help="build the base images (cached) and print where they are")
    build.set_defaults(run=_build_images)
    lab = sub.add_parser("lab", help="run COMMAND in a new lab network namespace with the apt gateway")
    lab.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND [ARGS...]")
    lab.set_defaults(run=_lab)
    args = parser.parse_args(argv)
    if args.what is None:
        parser.print_help()
        return 2
    code: int = args.run(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
