"""GoldenImage: gather its builds, inputs, sources and what channels hold on to; plan whether a
new version is needed (reconcile/goldenimage.py); execute."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import kopf
from pydantic import ValidationError

from ..api.conditions import find, is_true
from ..api.errors import CredentialsUnavailableError, SourceNotFoundError
from ..api.group import GROUP, VERSION
from ..api.resources import GoldenImage, ImageBuild
from ..kube.client import GOLDENIMAGES, IMAGEBUILDS
from ..packer import inputs as packer_inputs
from ..packer.fingerprint import image_recipe
from ..reconcile import goldenimage as planner
from ..reconcile import imagebuild as build_planner
from ..reconcile.usable import references
from . import inputs, objects
from .context import GOLDENIMAGE, Operator, current, log


async def reconcile(op: Operator, namespace: str, name: str) -> None:
    found = await objects.read_valid(op.kube, GOLDENIMAGES, GoldenImage, namespace, name)
    if found is None or found[1].metadata.deletion_timestamp is not None:
        return
    body, image = found
    observed = await gather(op, image)
    plan = planner.plan(image, observed)
    await op.executor.execute(GOLDENIMAGES, body, image, plan.status, plan.actions)
    if plan.requeue_after is not None:
        op.requeue(GOLDENIMAGE, namespace, name, plan.requeue_after.total_seconds() + 1)


def summary(body: Mapping[str, Any]) -> planner.BuildSummary | None:
    """What the image's planner needs of one ImageBuild; None when the models refuse it."""
    try:
        build = ImageBuild.model_validate(body)
    except ValidationError:
        meta = body["metadata"]
        log.warning("ImageBuild %s/%s is invalid and ignored", meta.get("namespace"), meta["name"])
        return None
    return planner.BuildSummary(
        name=build.metadata.name,
        version=build.spec.version,
        fingerprint=build.spec.fingerprint,
        created=build.metadata.creation_timestamp or datetime.now(UTC),
        recipe=image_recipe(build.spec.recipe),
        sources=build.spec.sources,
        inputs=build.spec.inputs,
        annotations=build.metadata.annotations,
        ready=find(build.status.conditions, "Ready") if build.status else None,
        deleting=build.metadata.deletion_timestamp is not None,
        validated=build.status is not None and is_true(build.status.conditions, "Validated"),
        revoked=build.spec.revoked is not None,
        revoked_by=(build.spec.revoked.revoked_by or "") if build.spec.revoked is not None else "",
        finished=build_planner.finished(build),
        resource_version=build.metadata.resource_version,
    )


async def builds(op: Operator, image: GoldenImage) -> list[planner.BuildSummary]:
    """The image's builds: those the watch delivered, and the one its status names as the latest
    even when the watch has not delivered it yet."""
    namespace, name = image.metadata.namespace or "", image.metadata.name
    bodies = op.cache.builds(namespace, name)
    recorded = image.status.latest_build if image.status is not None else None
    if recorded and all(b["metadata"]["name"] != recorded for b in bodies):
        # The event of this image's own status write can arrive before the ImageBuild watch
        # delivers the build that write names. Taken for missing, it would be created again
        # under the next version: ask the API server instead; only a 404 means it is gone.
        fetched = await op.kube.get(IMAGEBUILDS, namespace, recorded)
        if fetched is not None and (fetched.get("spec") or {}).get("image") == name:
            bodies.append(fetched)
    return [s for s in map(summary, bodies) if s is not None]


async def gather(op: Operator, image: GoldenImage) -> planner.ImageObservation:
    namespace, name = image.metadata.namespace or "", image.metadata.name
    spec = image.spec
    referenced: set[str] = set()
    for channel in op.cache.channels(namespace):
        referenced |= references(channel, name)

    contents = await inputs.read(op.kube, namespace, spec)
    digests = {ref: packer_inputs.digest(text) for ref, text in contents.items()}
    missing = [str(ref) for ref in packer_inputs.refs(spec) if str(ref) not in contents]

    sources: dict[str, str] = {}
    errors: dict[str, str] = {}
    credential_errors: dict[str, str] = {}
    for target in spec.targets:
        try:
            cloud = await op.clouds.adapter(spec.credentials_for(target.cloud), target.cloud, namespace)
        except CredentialsUnavailableError as exc:
            credential_errors[target.cloud] = str(exc)
            continue
        if cloud is None:
            continue
        try:
            resolved = await asyncio.to_thread(cloud.resolve_source, target)
        except SourceNotFoundError as exc:
            errors[target.name] = str(exc)
            continue
        if resolved is not None:
            sources[target.name] = resolved
    return planner.ImageObservation(
        now=datetime.now(UTC),
        runner=op.config.runner_image,
        builds=await builds(op, image),
        sources=sources,
        source_errors=errors,
        credential_errors=credential_errors,
        inputs=digests,
        missing_inputs=missing,
        referenced=frozenset(referenced),
    )


@kopf.on.event(GROUP, VERSION, "goldenimages")
async def on_event(type: str, name: str, namespace: str | None, **_: Any) -> None:
    await current().on_event(GOLDENIMAGE, type, namespace, name)
