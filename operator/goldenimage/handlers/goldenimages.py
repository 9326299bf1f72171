"""GoldenImage handlers: gather its builds, inputs and sources, decide whether a new version is
needed, create it, and summarize the image's state in its status."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import kopf
from pydantic import ValidationError

from ..api.conditions import find, is_true
from ..api.resources import GoldenImage, ImageBuild
from ..clouds.base import SourceNotFoundError
from ..kube import jobs, labels
from ..kube.client import GOLDENIMAGES, IMAGEBUILDS, IMAGECHANNELS
from ..packer import inputs as packer_inputs
from ..packer.fingerprint import image_recipe
from ..reconcile import goldenimage as planner
from ..reconcile import imagebuild as build_planner
from ..reconcile.actions import AnnotateBuild, CreateBuild, DeleteBuild, Emit
from . import imagechannels, inputs, invalid
from .context import GOLDENIMAGE, Operator, current, log
from .credentials import CredentialsUnavailableError, adapter


async def reconcile(op: Operator, namespace: str, name: str) -> None:
    found = await invalid.read(op, GOLDENIMAGES, GoldenImage, namespace, name)
    if found is None:
        return
    body, image = found
    observed = await _gather(op, image)
    plan = planner.plan(image, observed)
    for action in plan.actions:
        if isinstance(action, CreateBuild):
            await op.kube.create(IMAGEBUILDS, namespace, _build_object(image, action))
        elif isinstance(action, DeleteBuild):
            await op.kube.delete(IMAGEBUILDS, namespace, action.name)
        elif isinstance(action, AnnotateBuild):
            await op.kube.merge_patch(
                IMAGEBUILDS, namespace, action.name, {"metadata": {"annotations": action.annotations}}
            )
    new_status = plan.status.model_dump(mode="json", by_alias=True, exclude_none=True)
    if new_status != (body.get("status") or {}):
        await op.kube.write_status(
            GOLDENIMAGES, namespace, name, new_status, resource_version=None, old=body.get("status") or {}
        )
    for action in plan.actions:
        if isinstance(action, Emit):
            await op.kube.event(body, action.type, action.reason, action.message)
    if plan.requeue_after is not None:
        op.trigger(GOLDENIMAGE, namespace, name, plan.requeue_after.total_seconds() + 1)


async def _gather(op: Operator, image: GoldenImage) -> planner.ImageObservation:
    namespace, name = image.metadata.namespace or "", image.metadata.name
    spec = image.spec
    build_bodies = await op.kube.list(IMAGEBUILDS, namespace, labels.selector({labels.IMAGE: name}))
    builds = []
    for body in build_bodies:
        try:
            build = ImageBuild.model_validate(body)
        except ValidationError:
            log.warning("ImageBuild %s/%s is invalid and ignored", namespace, body["metadata"]["name"])
            continue
        if build.spec.image != name:
            continue
        builds.append(
            planner.BuildSummary(
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
                finished=build_planner.finished(build),
            )
        )

    referenced: set[str] = set()
    for channel in await op.kube.list(IMAGECHANNELS, namespace):
        referenced |= imagechannels.references(channel, name)

    contents = await inputs.read(op, namespace, spec)
    digests = {ref: packer_inputs.digest(text) for ref, text in contents.items()}
    missing = [str(ref) for ref in packer_inputs.refs(spec) if str(ref) not in contents]

    sources: dict[str, str] = {}
    errors: dict[str, str] = {}
    credential_errors: dict[str, str] = {}
    for target in spec.targets:
        try:
            cloud = await adapter(op, spec, target.cloud, namespace)
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
        builds=builds,
        sources=sources,
        source_errors=errors,
        credential_errors=credential_errors,
        inputs=digests,
        missing_inputs=missing,
        referenced=frozenset(referenced),
    )


def _build_object(image: GoldenImage, action: CreateBuild) -> dict[str, Any]:
    meta = image.metadata
    return {
        "apiVersion": "goldenimage.io/v1alpha1",
        "kind": "ImageBuild",
        "metadata": {
            "name": action.name,
            "namespace": meta.namespace,
            "labels": labels.for_build(meta.name, action.name, action.spec.version),
            "annotations": dict(action.annotations),
            "ownerReferences": [
                {**jobs.owner_reference("GoldenImage", meta.name, meta.uid or ""), "blockOwnerDeletion": False}
            ],
        },
        "spec": action.spec.wire(),
    }


@kopf.on.event("goldenimage.io", "v1alpha1", "goldenimages")
async def on_event(type: str, name: str, namespace: str | None, **_: Any) -> None:
    await current().on_event(GOLDENIMAGE, type, namespace, name)
