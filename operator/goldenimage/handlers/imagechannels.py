"""ImageChannel handlers: gather the image's builds, the upstream channel and which artifacts
still exist; plan; move the pointer with a conditional write; then publish it where consumers
look (cloud parameters and tags, a ConfigMap)."""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal

import kopf
from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from ..api.conditions import find, set_condition
from ..api.imagechannel import ChannelArtifact, ImageChannelStatus
from ..api.resources import ImageBuild, ImageChannel
from ..clouds.base import CloudError, Pointer
from ..kube import jobs, labels, names
from ..kube.client import CONFIGMAPS, IMAGEBUILDS, IMAGECHANNELS, ConflictError, OwnedByAnotherError
from ..packer import tags
from ..reconcile import imagechannel as planner
from . import invalid
from .context import CLOUD_RETRY_SECONDS, GOLDENIMAGE, IMAGECHANNEL, Operator, RetryLaterError, current, log
from .credentials import adapter


async def trigger_for_image(op: Operator, namespace: str, image: str) -> None:
    """Builds of `image` changed: its channels may move."""
    for body in await op.kube.list(IMAGECHANNELS, namespace):
        if body.get("spec", {}).get("image") == image:
            op.trigger(IMAGECHANNEL, namespace, body["metadata"]["name"])


def references(channel: Mapping[str, Any], image: str) -> set[str]:
    """The builds of `image` (by name) a channel points at, pointed at, or is pinned to; read from
    the raw object, so that a channel the models would refuse still protects its builds."""
    spec = channel.get("spec") or {}
    if spec.get("image") != image:
        return set()
    state = channel.get("status") or {}
    out = {e.get("build", "") for e in [state.get("current"), *(state.get("history") or [])] if e}
    if spec.get("version"):
        out.add(names.build(image, spec["version"]))
    return out


async def reconcile(op: Operator, namespace: str, name: str) -> None:
    found = await invalid.read(op, IMAGECHANNELS, ImageChannel, namespace, name)
    if found is None:
        return
    body, channel = found
    observed, builds = await _gather(op, channel)
    plan = planner.plan(channel, observed)
    status = plan.status
    new_status = status.model_dump(mode="json", by_alias=True, exclude_none=True)
    resource_version = channel.metadata.resource_version
    if new_status != (body.get("status") or {}):
        # Conditional: of two concurrent moves, one wins and the other re-plans from it.
        written = await op.kube.write_status(
            IMAGECHANNELS, namespace, name, new_status, resource_version=resource_version, old=body.get("status") or {}
        )
        resource_version = written["metadata"]["resourceVersion"]
        for action in plan.actions:
            await op.kube.event(body, action.type, action.reason, action.message)
        await _trigger_downstream(op, namespace, name)
        # What channels reference decides what retention may delete.
        op.trigger(GOLDENIMAGE, namespace, channel.spec.image)
    published = await _publish(op, channel, status, builds)
    conditions = set_condition(
        status.conditions, "Published", *published, now=datetime.now(UTC), generation=channel.metadata.generation
    )
    if conditions != status.conditions:
        with_published = status.model_copy(update={"conditions": conditions})
        dumped = with_published.model_dump(mode="json", by_alias=True, exclude_none=True)
        try:
            await op.kube.write_status(
                IMAGECHANNELS, namespace, name, dumped, resource_version=resource_version, old=new_status
            )
        except ConflictError:
            op.trigger(IMAGECHANNEL, namespace, name)  # publication is idempotent: the next pass records it
    if published[0] != "True":
        op.trigger(IMAGECHANNEL, namespace, name, CLOUD_RETRY_SECONDS)
    if plan.requeue_after is not None:
        op.trigger(IMAGECHANNEL, namespace, name, plan.requeue_after.total_seconds() + 0.5)


async def _gather(op: Operator, channel: ImageChannel) -> tuple[planner.ChannelObservation, dict[int, ImageBuild]]:
    namespace = channel.metadata.namespace or ""
    image = channel.spec.image
    builds: dict[int, ImageBuild] = {}
    views: dict[int, planner.BuildView] = {}
    unreadable: list[str] = []
    for body in await op.kube.list(IMAGEBUILDS, namespace, labels.selector({labels.IMAGE: image})):
        try:
            build = ImageBuild.model_validate(body)
        except ValidationError:
            unreadable.append(body["metadata"]["name"])
            continue
        if build.spec.image != image or build.metadata.deletion_timestamp is not None:
            continue
        builds[build.spec.version] = build
        views[build.spec.version] = view(build)
    if unreadable:
        # Unknown is not missing: keep the pointer rather than fall back from a build we cannot read.
        raise RetryLaterError(f"ImageBuilds {', '.join(unreadable)} do not match the API; not moving")

    upstream_status = None
    upstream_exists = True
    source = channel.spec.source
    if source is not None and source.channel is not None:
        upstream = await op.kube.get(IMAGECHANNELS, namespace, source.channel)
        upstream_exists = upstream is not None
        if upstream is not None and upstream.get("status"):
            upstream_status = ImageChannelStatus.model_validate(upstream["status"])

    # Which artifacts the channel could point at still exist: those of usable builds and of the
    # entries it points or pointed at, asked with each build's own credentials.
    status = channel.status or ImageChannelStatus()
    relevant = {e.version for e in [status.current, *status.history] if e is not None}
    relevant |= {v for v, b in views.items() if b.validated_at is not None and b.revoked is None}
    missing: set[tuple[str, str]] = set()
    for version in sorted(relevant & builds.keys()):
        build = builds[version]
        by_cloud: dict[str, list[tuple[str, str]]] = defaultdict(list)
        for a in views[version].artifacts:
            by_cloud[a.cloud].append((a.region, a.id))
        for cloud_name, artifacts in by_cloud.items():
            try:
                cloud = await adapter(op, build.spec.recipe, cloud_name, namespace)
                if cloud is not None:
                    missing |= await asyncio.to_thread(cloud.missing_artifacts, artifacts)
            except CloudError as exc:
                # Unknown is not missing: such artifacts count as present until a check succeeds.
                log.warning(
                    "ImageChannel %s/%s: cannot check %s: %s",
                    namespace,
                    channel.metadata.name,
                    build.metadata.name,
                    exc,
                )
    observed = planner.ChannelObservation(
        now=datetime.now(UTC),
        builds=views,
        upstream=upstream_status,
        upstream_exists=upstream_exists,
        missing=frozenset(missing),
    )
    return observed, builds


def view(build: ImageBuild) -> planner.BuildView:
    status = build.status
    artifacts = tuple(
        ChannelArtifact(target=t.name, cloud=t.cloud, region=a.region, id=a.id)
        for t in (status.targets if status else [])
        if t.phase == "Succeeded"
        for a in t.artifacts
    )
    validated = find(status.conditions, "Validated") if status else None
    ready = find(status.conditions, "Ready") if status else None
    return planner.BuildView(
        name=build.metadata.name,
        version=build.spec.version,
        fingerprint=build.spec.fingerprint,
        artifacts=artifacts,
        validated_at=validated.last_transition_time if validated is not None and validated.status == "True" else None,
        revoked=build.spec.revoked.reason if build.spec.revoked is not None else None,
        state=ready.reason if ready is not None else "",
    )


async def _trigger_downstream(op: Operator, namespace: str, name: str) -> None:
    for body in await op.kube.list(IMAGECHANNELS, namespace):
        if (body.get("spec", {}).get("source") or {}).get("channel") == name:
            op.trigger(IMAGECHANNEL, namespace, body["metadata"]["name"])


# -- publication -------------------------------------------------------------------------------


class PublishError(Exception):
    pass


def _pointers(artifacts: list[ChannelArtifact], cloud: str) -> list[Pointer]:
    return [Pointer(target=a.target, region=a.region, image=a.id) for a in artifacts if a.cloud == cloud]


async def _publish(
    op: Operator, channel: ImageChannel, status: ImageChannelStatus, builds: dict[int, ImageBuild]
) -> tuple[Literal["True", "False"], str, str]:
    """Make every publication target say what `status.current` says: (status, reason, message)."""
    publish = channel.spec.publish
    if publish is None:
        return ("True", "NothingToPublish", "spec.publish is empty")
    namespace = channel.metadata.namespace or ""
    current = list(status.current.artifacts) if status.current is not None else []
    previous = list(status.history[0].artifacts) if status.history else []
    done: list[str] = []
    problems: list[str] = []
    sections = publish.model_dump(mode="json", by_alias=True, exclude_none=True)
    # Publication uses the credentials of the build pointed at (or the newest one).
    build = builds.get(status.current.version) if status.current is not None else None
    if build is None and builds:
        build = builds[max(builds)]
    for cloud_name in ("aws", "gcp", "azure"):
        section = sections.get(cloud_name)
        if not section:
            continue
        try:
            cloud = await adapter(op, build.spec.recipe, cloud_name, namespace) if build else op.clouds.get(cloud_name)
            if cloud is None:
                problems.append(f"{cloud_name}: no adapter to publish with")
                continue
            changes = await asyncio.to_thread(
                cloud.publish,
                {tags.NAMESPACE: namespace, tags.IMAGE: channel.spec.image},
                section,
                _pointers(current, cloud_name),
                _pointers(previous, cloud_name),
            )
        except CloudError as exc:
            problems.append(f"{cloud_name}: {exc}")
            continue
        done.append(cloud_name)
        for change in changes:
            log.info("ImageChannel %s/%s: %s", namespace, channel.metadata.name, change)
    if publish.config_map is not None:
        try:
            await publish_config_map(op, channel, status)
            done.append(f"ConfigMap {publish.config_map.name}")
        except (ApiException, PublishError) as exc:
            problems.append(f"ConfigMap {publish.config_map.name}: {getattr(exc, 'reason', exc)}")
    if problems:
        return ("False", "PublishFailed", "; ".join(problems))
    return ("True", "Published", "published to " + ", ".join(done))


async def publish_config_map(op: Operator, channel: ImageChannel, status: ImageChannelStatus) -> None:
    """The pointer for in-cluster consumers: version, build and artifacts as JSON, plus one key
    per target and region (`<target>.<region>`)."""
    assert channel.spec.publish is not None and channel.spec.publish.config_map is not None
    meta = channel.metadata
    entry = status.current
    data: dict[str, str] = {"image": channel.spec.image, "channel": meta.name}
    if entry is not None:
        artifacts = [a.model_dump(mode="json", by_alias=True) for a in entry.artifacts]
        data |= {
            "version": str(entry.version),
            "build": entry.build,
            "promotedAt": entry.promoted_at.isoformat(),
            "artifacts.json": json.dumps(artifacts, indent=2, sort_keys=True),
            **{f"{a.target}.{a.region}": a.id for a in entry.artifacts},
        }
    name = channel.spec.publish.config_map.name
    namespace = meta.namespace or ""
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {labels.MANAGED_BY: labels.MANAGER, labels.IMAGE: channel.spec.image},
            "ownerReferences": [
                {**jobs.owner_reference("ImageChannel", meta.name, meta.uid or ""), "blockOwnerDeletion": False}
            ],
        },
        "data": data,
    }
    try:
        existing = await op.kube.create(CONFIGMAPS, namespace, body)
    except OwnedByAnotherError as exc:
        raise PublishError(f"ConfigMap {name} exists and is not this channel's; it is left alone") from exc
    if existing.get("data") != data:
        body["metadata"]["resourceVersion"] = existing["metadata"]["resourceVersion"]
        await op.kube.replace(CONFIGMAPS, namespace, name, body)


# -- kopf wiring -------------------------------------------------------------------------------


@kopf.on.event("goldenimage.io", "v1alpha1", "imagechannels")
async def on_event(type: str, name: str, namespace: str | None, **_: Any) -> None:
    await current().on_event(IMAGECHANNEL, type, namespace, name)
