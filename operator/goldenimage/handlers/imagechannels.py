"""ImageChannel: gather its image's builds, the upstream channel and what the last publication
did; plan where the pointer goes and what to publish (reconcile/imagechannel.py); execute. The
move is a write conditional on the channel's resourceVersion: of two concurrent moves one wins
and the other re-plans from it."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import kopf
from pydantic import ValidationError

from ..api.errors import RetryLaterError
from ..api.group import GROUP, VERSION
from ..api.imagechannel import ImageChannelStatus
from ..api.resources import ImageBuild, ImageChannel
from ..kube.client import IMAGECHANNELS
from ..reconcile import imagechannel as planner
from ..reconcile import revocations
from ..reconcile.usable import BuildView
from . import objects
from .context import GOLDENIMAGE, IMAGECHANNEL, Operator, current


async def reconcile(op: Operator, namespace: str, name: str) -> None:
    found = await objects.read_valid(op.kube, IMAGECHANNELS, ImageChannel, namespace, name)
    if found is None or found[1].metadata.deletion_timestamp is not None:
        return
    body, channel = found
    observed = gather(op, channel)
    plan = planner.plan(
        channel,
        observed,
        planner.ChannelSettings(republish=op.config.republish, ssm_parameter_prefix=op.config.ssm_parameter_prefix),
    )
    done = await op.executor.execute(IMAGECHANNELS, body, channel, plan.status, plan.actions)
    requeue = plan.requeue_after.total_seconds() + 0.5 if plan.requeue_after is not None else None
    op.requeue(IMAGECHANNEL, namespace, name, requeue, done.requeue_after)


def gather(op: Operator, channel: ImageChannel) -> planner.ChannelObservation:
    namespace = channel.metadata.namespace or ""
    image = channel.spec.image
    views: dict[int, BuildView] = {}
    unreadable: list[str] = []
    declared = op.cache.revocations(namespace, image)
    for body in op.cache.builds(namespace, image):
        try:
            build = ImageBuild.model_validate(body)
        except ValidationError:
            unreadable.append(body["metadata"]["name"])
            continue
        if build.metadata.deletion_timestamp is None:
            views[build.spec.version] = revocations.seen(BuildView.of(build), declared)
    if unreadable:
        # Unknown is not missing: keep the pointer rather than fall back from a build we cannot read.
        raise RetryLaterError(f"ImageBuilds {', '.join(unreadable)} do not match the API; not moving")
    upstream_status = None
    upstream_exists = True
    source = channel.spec.source
    channels = {c["metadata"]["name"]: c for c in op.cache.channels(namespace)}
    if source is not None and source.channel is not None:
        upstream = channels.get(source.channel)
        upstream_exists = upstream is not None
        if upstream is not None and upstream.get("status"):
            upstream_status = ImageChannelStatus.model_validate(upstream["status"])
    return planner.ChannelObservation(
        now=datetime.now(UTC),
        builds=views,
        upstream=upstream_status,
        upstream_exists=upstream_exists,
        image_exists=op.cache.image_exists(namespace, image),
        following={name: _following(body) for name, body in channels.items()},
        published=op.ledger.outcomes(channel.metadata.uid or ""),
    )


def _following(body: Mapping[str, Any]) -> planner.Following:
    spec = body.get("spec") or {}
    upstream = (spec.get("source") or {}).get("channel")
    held = spec.get("version") is not None or bool(spec.get("suspend"))
    return planner.Following(upstream if isinstance(upstream, str) else None, held)


@kopf.on.event(GROUP, VERSION, "imagechannels")
async def on_event(type: str, name: str, namespace: str | None, body: kopf.Body, **_: Any) -> None:
    op = current()
    if namespace is not None:
        # Channels downstream follow this one; what channels reference decides what retention keeps.
        for other in op.cache.channels(namespace):
            if ((other.get("spec") or {}).get("source") or {}).get("channel") == name:
                op.trigger(IMAGECHANNEL, namespace, other["metadata"]["name"])
        image = body.get("spec", {}).get("image")
        if image:
            op.trigger(GOLDENIMAGE, namespace, image)
        if type == "DELETED":
            op.ledger.forget(body.get("metadata", {}).get("uid", ""))
    await op.on_event(IMAGECHANNEL, type, namespace, name)
