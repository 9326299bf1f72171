"""`kubectl golden`: images, builds and channels at a glance; channel history; promotion,
rollback, unpinning, revocation and rebuilds.

Promote and rollback set the channel's `spec.version`, and unpin removes it, exactly what a GitOps
change would do; `--dry-run` prints that change instead of making it.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from ..api import labels, names
from ..api.group import GROUP, VERSION
from ..api.imagebuild import revocation_patch
from ..api.imagechannel import ImageChannelStatus
from ..api.resources import ImageBuild
from ..reconcile import revocations
from ..reconcile.imagechannel import rollback_target
from ..reconcile.usable import BuildView, verdict


class CommandError(Exception):
    """A clear, user-facing refusal."""


class Golden:
    def __init__(self, api: client.ApiClient, namespace: str, user: str) -> None:
        self.custom = client.CustomObjectsApi(api)
        self.namespace = namespace
        self.user = user
        self._declared: dict[str, dict[int, str]] = {}

    def get(self, plural: str, name: str) -> dict[str, Any] | None:
        try:
            found: dict[str, Any] = self.custom.get_namespaced_custom_object(
                GROUP, VERSION, self.namespace, plural, name
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return found

    def list(self, plural: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.custom.list_namespaced_custom_object(GROUP, VERSION, self.namespace, plural)[
            "items"
        ]
        return items

    def patch(self, plural: str, name: str, body: dict[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object(GROUP, VERSION, self.namespace, plural, name, body)

    def channel(self, name: str) -> dict[str, Any]:
        found = self.get("imagechannels", name)
        if found is None:
            raise CommandError(f"imagechannel {name!r} not found in namespace {self.namespace}")
        return found

    def build(self, image: str, version: int) -> ImageBuild | None:
        found = self.get("imagebuilds", names.build(image, version))
        return ImageBuild.model_validate(found) if found is not None else None

    def declared(self, image: str) -> dict[int, str]:
        """The versions the image declares revoked (its spec.revocations), read once."""
        if image not in self._declared:
            self._declared[image] = revocations.declared(self.get("goldenimages", image))
        return self._declared[image]

    def why_unusable(self, image: str, version: int) -> str | None:
        """Why a channel cannot point at a version (as the operator decides it), or None."""
        build = self.build(image, version)
        view = revocations.seen(BuildView.of(build), self.declared(image)) if build is not None else None
        found = verdict(version, view)
        return None if found.usable else f"{image}: {found.message}"


def _table(rows: Sequence[Sequence[object]]) -> str:
    text = [[("" if v is None else str(v)) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in text) for i in range(len(text[0]))]
    return "\n".join("   ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in text)


def _age(timestamp: str | None) -> str:
    if not timestamp:
        return ""
    seconds = int((datetime.now(UTC) - datetime.fromisoformat(timestamp.replace("Z", "+00:00"))).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{max(seconds, 0)}s"


def _ready(obj: dict[str, Any]) -> tuple[str, str]:
    for condition in obj.get("status", {}).get("conditions", []):
        if condition["type"] == "Ready":
            return condition["status"], condition["reason"]
    return "", ""


# -- commands ----------------------------------------------------------------------------------


def status(golden: Golden, args: argparse.Namespace) -> str:
    images = golden.list("goldenimages")
    builds = golden.list("imagebuilds")
    channels = golden.list("imagechannels")
    out = []
    rows: list[list[object]] = [["IMAGE", "LATEST", "VALIDATED", "READY", "REASON"]]
    for i in images:
        s = i.get("status", {})
        rows.append([i["metadata"]["name"], s.get("latestVersion"), s.get("latestValidatedVersion"), *_ready(i)])
    out.append(_table(rows))
    rows = [["BUILD", "VERSION", "STATUS", "REVOKED", "AGE"]]
    for b in sorted(builds, key=lambda b: (b["spec"]["image"], b["spec"]["version"])):
        revoked = (b["spec"].get("revoked") or {}).get("reason")
        rows.append(
            [
                b["metadata"]["name"],
                b["spec"]["version"],
                _ready(b)[1],
                revoked,
                _age(b["metadata"].get("creationTimestamp")),
            ]
        )
    out.append(_table(rows))
    rows = [["CHANNEL", "IMAGE", "VERSION", "BUILD", "PROMOTED", "READY", "REASON"]]
    for c in channels:
        current = c.get("status", {}).get("current") or {}
        rows.append(
            [
                c["metadata"]["name"],
                c["spec"]["image"],
                current.get("version"),
                current.get("build"),
                _age(current.get("promotedAt")),
                *_ready(c),
            ]
        )
    out.append(_table(rows))
    return "\n\n".join(out)


def history(golden: Golden, args: argparse.Namespace) -> str:
    body = golden.channel(args.channel)
    state = ImageChannelStatus.model_validate(body.get("status") or {})
    rows: list[list[object]] = [["", "VERSION", "BUILD", "PROMOTED", "REASON", "MESSAGE"]]
    entries = ([("*", state.current)] if state.current else []) + [("", e) for e in state.history]
    for mark, e in entries:
        rows.append([mark, e.version, e.build, e.promoted_at.strftime("%Y-%m-%d %H:%M:%S"), e.reason, e.message[:80]])
    if len(rows) == 1:
        return f"{args.channel} has no history yet"
    return _table(rows)


def _set_version(golden: Golden, channel: str, version: int, dry_run: bool, why: str) -> str:
    patch = {"spec": {"version": version}}
    if dry_run:
        return (
            f"# {why}\n"
            f"kubectl patch imagechannel {channel} -n {golden.namespace} --type=merge -p '{json.dumps(patch)}'\n"
            f"# or, in the manifest kept in Git:\n#   spec:\n#     version: {version}"
        )
    golden.patch("imagechannels", channel, patch)
    return f"imagechannel/{channel}: spec.version set to {version} ({why})"


def promote(golden: Golden, args: argparse.Namespace) -> str:
    body = golden.channel(args.channel)
    image = body["spec"]["image"]
    problem = golden.why_unusable(image, args.version)
    if problem is not None:
        raise CommandError(f"cannot promote {args.channel} to version {args.version}: {problem}")
    return _set_version(golden, args.channel, args.version, args.dry_run, f"promote to version {args.version}")


def rollback(golden: Golden, args: argparse.Namespace) -> str:
    body = golden.channel(args.channel)
    image = body["spec"]["image"]
    state = ImageChannelStatus.model_validate(body.get("status") or {})
    if state.current is None:
        raise CommandError(f"{args.channel} points at no version: nothing to roll back from")
    target = rollback_target(state, lambda version: golden.why_unusable(image, version) is None)
    if target is None:
        raise CommandError(f"{args.channel} has no earlier usable version in its history to roll back to")
    why = f"roll back from version {state.current.version} to version {target.version}"
    return _set_version(golden, args.channel, target.version, args.dry_run, why)


def unpin(golden: Golden, args: argparse.Namespace) -> str:
    body = golden.channel(args.channel)
    spec = body.get("spec") or {}
    pinned, source = spec.get("version"), spec.get("source")
    if pinned is None:
        raise CommandError(f"{args.channel} is not pinned (no spec.version): it already follows its policy")
    if not source:
        raise CommandError(
            f"{args.channel} has no spec.source: without spec.version it would have no policy to follow; "
            "add a source to it (in Git, if Git manages it), or promote it to another version instead"
        )
    policy = f"channel {source['channel']}" if source.get("channel") else "latestValidated"
    patch = {"spec": {"version": None}}
    if args.dry_run:
        return (
            f"# unpin from version {pinned}: back to its policy ({policy})\n"
            f"kubectl patch imagechannel {args.channel} -n {golden.namespace} --type=merge -p '{json.dumps(patch)}'\n"
            "# or, in the manifest kept in Git: remove spec.version"
        )
    golden.patch("imagechannels", args.channel, patch)
    return f"imagechannel/{args.channel}: unpinned from version {pinned}; it follows its policy again ({policy})"


def revoke(golden: Golden, args: argparse.Namespace) -> str:
    build = golden.get("imagebuilds", args.build)
    if build is None:
        raise CommandError(f"imagebuild {args.build!r} not found in namespace {golden.namespace}")
    patch = revocation_patch(args.reason, golden.user, datetime.now(UTC))
    if args.dry_run:
        spec = build.get("spec") or {}
        declared = json.dumps({"version": spec.get("version"), "reason": args.reason})
        return (
            f"kubectl patch imagebuild {args.build} -n {golden.namespace} --type=merge -p '{json.dumps(patch)}'\n"
            f"# or, in the GoldenImage {spec.get('image')} kept in Git:\n#   spec:\n#     revocations:\n"
            f"#       - {declared}"
        )
    golden.patch("imagebuilds", args.build, patch)
    return f"imagebuild/{args.build} revoked: {args.reason}; every channel pointing at it moves off"


def rebuild(golden: Golden, args: argparse.Namespace) -> str:
    if golden.get("goldenimages", args.image) is None:
        raise CommandError(f"goldenimage {args.image!r} not found in namespace {golden.namespace}")
    token = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")  # two requests, two tokens
    patch = {"metadata": {"annotations": {labels.REBUILD: token}}}
    if args.dry_run:
        return f"kubectl annotate goldenimage {args.image} -n {golden.namespace} --overwrite {labels.REBUILD}={token}"
    golden.patch("goldenimages", args.image, patch)
    return f"goldenimage/{args.image}: rebuild requested ({labels.REBUILD}={token})"


DESCRIPTION = (
    "Shows and changes the GoldenImages, ImageBuilds and ImageChannels of a namespace: status at a glance, a "
    "channel's history, promotion, rollback, unpinning, revocation and rebuilds."
)
EPILOG = (
    "Promote and rollback set a channel's spec.version and unpin removes it, exactly what a GitOps change would "
    "do. With --dry-run, every command that changes something prints the change instead of making it. Run "
    "'kubectl golden COMMAND --help' for the arguments of a command."
)
CHANNEL = "Name of the ImageChannel."


def _help_flag(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """argparse's own -h says "show this help message and exit"; this one says it as a sentence."""
    parser.add_argument("-h", "--help", action="help", help="Show this help and exit.")
    return parser


def _connection_flags(parser: argparse.ArgumentParser, default: object) -> argparse.ArgumentParser:
    parser.add_argument("-n", "--namespace", default=default, help="Namespace to work in; the context's by default.")
    parser.add_argument(
        "--kubeconfig", default=default, help="Kubeconfig file; KUBECONFIG or ~/.kube/config by default."
    )
    parser.add_argument("--context", default=default, help="Kubeconfig context; the current context by default.")
    return parser


def _command(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    summary: str,
    details: str,
    parents: list[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    """A subcommand: `summary` in the list of commands, with `details` in its own --help."""
    helpful = _help_flag(argparse.ArgumentParser(add_help=False))  # -h first, as argparse's own would be
    return sub.add_parser(
        name, help=summary, description=f"{summary} {details}", parents=[helpful, *parents], add_help=False
    )


def parser() -> argparse.ArgumentParser:
    """Connection flags go before or after the subcommand, as with kubectl. The subcommands' copies
    default to SUPPRESS, so an absent flag leaves alone what the top level parsed (or its None)."""
    top = argparse.ArgumentParser(prog="kubectl golden", description=DESCRIPTION, epilog=EPILOG, add_help=False)
    main = _connection_flags(_help_flag(top), None)
    common = _connection_flags(argparse.ArgumentParser(add_help=False), argparse.SUPPRESS)
    changes = argparse.ArgumentParser(add_help=False)
    changes.add_argument("--dry-run", action="store_true", help="Print the change instead of making it.")
    sub = main.add_subparsers(
        dest="command", metavar="COMMAND", required=True, help="The command to run, one of the following."
    )
    _command(
        sub,
        "status",
        "Shows the images, builds and channels of the namespace at a glance.",
        "Images with their newest and newest validated versions, builds with their state and revocation, and "
        "channels with the version they point at.",
        [common],
    ).set_defaults(run=status)
    p = _command(
        sub,
        "history",
        "Shows a channel's current entry and its history, newest first.",
        "Each entry names the version, its build, when the channel moved to it, why, and how.",
        [common],
    )
    p.add_argument("channel", help=CHANNEL)
    p.set_defaults(run=history)
    p = _command(
        sub,
        "promote",
        "Points a channel at a version by setting its spec.version.",
        "Versions that do not exist, are not validated, are revoked or have lost artifacts are refused.",
        [common, changes],
    )
    p.add_argument("channel", help=CHANNEL)
    p.add_argument("--version", type=int, required=True, help="The version to point at.")
    p.set_defaults(run=promote)
    p = _command(
        sub,
        "rollback",
        "Points a channel back at its previous usable version by setting its spec.version.",
        "That is the newest entry of its history, of another version, that is still usable.",
        [common, changes],
    )
    p.add_argument("channel", help=CHANNEL)
    p.set_defaults(run=rollback)
    p = _command(
        sub,
        "unpin",
        "Removes a channel's spec.version, so that it follows its spec.source again.",
        "A channel that is not pinned, or has no spec.source to follow, is refused.",
        [common, changes],
    )
    p.add_argument("channel", help=CHANNEL)
    p.set_defaults(run=unpin)
    p = _command(
        sub,
        "revoke",
        "Revokes a build: every channel pointing at it moves off it.",
        "Its artifacts are marked deprecated in the clouds, and a revocation cannot be withdrawn. With --dry-run "
        "the entry to list in the GoldenImage's spec.revocations is printed too.",
        [common, changes],
    )
    p.add_argument("build", help="Name of the ImageBuild: <image>-<version>.")
    p.add_argument("--reason", required=True, help="Why the build is revoked, e.g. a CVE.")
    p.set_defaults(run=revoke)
    p = _command(
        sub,
        "rebuild",
        "Asks for a new version of an image, even when nothing changed.",
        "It sets the goldenimage.io/rebuild annotation to a new token: the operator builds one version per token.",
        [common, changes],
    )
    p.add_argument("image", help="Name of the GoldenImage.")
    p.set_defaults(run=rebuild)
    return main


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        contexts, active = config.list_kube_config_contexts(config_file=args.kubeconfig)
        context = next((c for c in contexts if c["name"] == args.context), active) if args.context else active
        namespace = args.namespace or context.get("context", {}).get("namespace") or "default"
        user = context.get("context", {}).get("user", "unknown")
        api = config.new_client_from_config(config_file=args.kubeconfig, context=args.context)
        print(args.run(Golden(api, namespace, user), args))
    except CommandError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except ValidationError as exc:
        print(f"error: an object does not match the {GROUP} API: {exc}", file=sys.stderr)
        return 1
    except ApiException as exc:
        print(f"error: the API server said {exc.status} {exc.reason}: {exc.body}", file=sys.stderr)
        return 1
    except config.ConfigException as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
