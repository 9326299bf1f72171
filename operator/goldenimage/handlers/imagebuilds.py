"""ImageBuild handlers: gather the build's Jobs and inputs, plan, create what the plan asks for,
record the status conditionally; on deletion stop the Jobs and apply the deletion policy."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

import kopf
from pydantic import ValidationError

from ..api.conditions import is_true
from ..api.goldenimage import Target
from ..api.resources import ImageBuild
from ..clouds.base import CloudError, ForeignArtifactError
from ..kube import jobs, labels, names, results
from ..kube.client import CONFIGMAPS, IMAGEBUILDS, IMAGECHANNELS, JOBS, PODS, SECRETS, SERVICEACCOUNTS
from ..packer.render import Settings
from ..reconcile import imagebuild as planner
from ..reconcile.actions import (
    CreateInputs,
    CreateJob,
    CreateValidationJob,
    DeleteJob,
    DeprecateArtifacts,
    Emit,
    SweepAttempt,
)
from . import imagechannels, inputs, invalid
from .context import GOLDENIMAGE, IMAGEBUILD, Operator, current, log
from .credentials import adapter


def _terminal(build: ImageBuild) -> bool:
    """Nothing left to do for this generation: the build finished and any revocation was
    carried out."""
    status = build.status
    if status is None or status.observed_generation != build.metadata.generation or not planner.finished(build):
        return False
    return build.spec.revoked is None or is_true(status.conditions, "Deprecated")


async def reconcile(op: Operator, namespace: str, name: str) -> None:
    found = await invalid.read(op, IMAGEBUILDS, ImageBuild, namespace, name)
    if found is None:
        return
    body, build = found
    if _terminal(build):
        return
    observed = await _gather(op, build)
    settings = planner.BuildSettings(
        retry_base=op.config.retry_base,
        retry_cap=op.config.retry_cap,
        render=Settings(communicator=op.config.packer_communicator),
    )
    plan = planner.plan(build, observed, settings)
    for action in plan.actions:
        if isinstance(action, CreateInputs):
            await op.kube.create(CONFIGMAPS, namespace, _inputs_config_map(build, action.data))
        elif isinstance(action, CreateJob):
            target = build.spec.recipe.target(action.target)
            await op.kube.create(JOBS, namespace, jobs.build_job(build, target, action.attempt, op.config))
        elif isinstance(action, CreateValidationJob):
            target = build.spec.recipe.target(action.target)
            job = jobs.validation_job(build, target, action.region, action.artifact, action.attempt, op.config)
            await op.kube.create(JOBS, namespace, job)
        elif isinstance(action, DeleteJob):
            await op.kube.delete(JOBS, namespace, action.name)
        elif isinstance(action, SweepAttempt):
            await _sweep_attempt(op, build, action)
        elif isinstance(action, DeprecateArtifacts):
            # Before the status says so: if this fails, the next reconcile tries again.
            for note in await _deprecate(op, build, action):
                await op.kube.event(body, "Warning", "DeprecationPartial", note)
    new_status = plan.status.model_dump(mode="json", by_alias=True, exclude_none=True)
    old_status = body.get("status") or {}
    if new_status != old_status:
        # Conditional: artifact IDs recorded by another writer in between must not be lost.
        await op.kube.write_status(
            IMAGEBUILDS, namespace, name, new_status, resource_version=build.metadata.resource_version, old=old_status
        )
        # The image summarizes its builds; channels follow them.
        op.trigger(GOLDENIMAGE, namespace, build.spec.image)
        await imagechannels.trigger_for_image(op, namespace, build.spec.image)
    for action in plan.actions:
        if isinstance(action, Emit):
            await op.kube.event(body, action.type, action.reason, action.message)
    if plan.requeue_after is not None:
        op.trigger(IMAGEBUILD, namespace, name, plan.requeue_after.total_seconds() + 0.5)


def regions(target: Target) -> list[str]:
    """Every region a target's build touches."""
    return [target.location] + (list(target.aws.copy_to_regions) if target.aws else [])


async def _sweep_attempt(op: Operator, build: ImageBuild, action: SweepAttempt) -> None:
    target = build.spec.recipe.target(action.target)
    cloud = await adapter(op, build.spec.recipe, target.cloud, build.metadata.namespace or "")
    if cloud is None:
        return
    build_id = names.build_id(build.metadata.name, build.metadata.uid or "")
    swept = await asyncio.to_thread(cloud.sweep, build_id, regions(target), action.target, action.attempt)
    if swept:
        left = ", ".join(map(str, swept))
        log.info("ImageBuild %s: attempt %d left %s; deleted", build.metadata.name, action.attempt, left)


async def _deprecate(op: Operator, build: ImageBuild, action: DeprecateArtifacts) -> list[str]:
    notes = []
    for target_name, region, artifact in action.artifacts:
        target = build.spec.recipe.target(target_name)
        cloud = await adapter(op, build.spec.recipe, target.cloud, build.metadata.namespace or "")
        if cloud is None:
            notes.append(f"{artifact}: no {target.cloud} adapter to deprecate it with")
            continue
        note = await asyncio.to_thread(cloud.deprecate, region, artifact, action.reason)
        if note:
            notes.append(note)
    return notes


async def _gather(op: Operator, build: ImageBuild) -> planner.BuildObservation:
    namespace, name = build.metadata.namespace or "", build.metadata.name
    selector = labels.selector({labels.BUILD: name})
    config_map, job_list, pod_list = await asyncio.gather(
        op.kube.get(CONFIGMAPS, namespace, names.inputs(name)),
        op.kube.list(JOBS, namespace, selector),
        op.kube.list(PODS, namespace, selector),
    )
    pods_by_job: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for pod in pod_list:
        pods_by_job[pod["metadata"].get("labels", {}).get("job-name", "")].append(pod)
    outcomes = {j["metadata"]["name"]: results.observe(j, pods_by_job[j["metadata"]["name"]]) for j in job_list}

    contents: dict[str, str] | None = None
    if config_map is None:
        contents = await inputs.read(op, namespace, build.spec.recipe)
    missing = await _missing_secrets(op, build)
    return planner.BuildObservation(
        now=datetime.now(UTC),
        inputs_exist=config_map is not None,
        input_contents=contents,
        missing_secrets=missing,
        missing_service_accounts=await _missing_service_accounts(op, build),
        jobs=outcomes,
    )


async def _missing_service_accounts(op: Operator, build: ImageBuild) -> list[str]:
    credentials = build.spec.recipe.credentials
    if credentials is None:
        return []
    wanted = {
        c.service_account_name
        for c in (credentials.aws, credentials.gcp, credentials.azure)
        if c is not None and c.service_account_name
    }
    namespace = build.metadata.namespace or ""
    return [n for n in sorted(wanted) if await op.kube.get(SERVICEACCOUNTS, namespace, n) is None]


async def _missing_secrets(op: Operator, build: ImageBuild) -> list[str]:
    recipe = build.spec.recipe
    namespace = build.metadata.namespace or ""
    wanted: dict[str, set[str]] = defaultdict(set)
    for variable in recipe.secret_variables:
        wanted[variable.secret_key_ref.name].add(variable.secret_key_ref.key)
    if recipe.credentials is not None:
        for creds in (recipe.credentials.aws, recipe.credentials.gcp, recipe.credentials.azure):
            if creds is not None and creds.secret_ref is not None:
                wanted[creds.secret_ref.name]
    missing = []
    for secret_name, keys in sorted(wanted.items()):
        secret = await op.kube.get(SECRETS, namespace, secret_name)
        if secret is None:
            missing.append(secret_name)
            continue
        data = secret.get("data") or {}
        missing += [f"{secret_name}/{k}" for k in sorted(keys) if k not in data]
    return missing


def _inputs_config_map(build: ImageBuild, data: dict[str, str] | Any) -> dict[str, Any]:
    meta = build.metadata
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": names.inputs(meta.name),
            "namespace": meta.namespace,
            "labels": labels.for_build(build.spec.image, meta.name, build.spec.version),
            "ownerReferences": [jobs.owner_reference("ImageBuild", meta.name, meta.uid or "")],
        },
        "data": dict(data),
        "immutable": True,
    }


# -- deletion ----------------------------------------------------------------------------------


async def delete(op: Operator, body: dict[str, Any]) -> None:
    """Stop the build's Jobs gracefully, then keep or delete its artifacts as its policy says,
    keeping them whatever the policy while a channel refers to this version."""
    meta = body["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    annotations = meta.get("annotations", {})
    if annotations.get(labels.SKIP_CLEANUP) == "true":
        await op.kube.event(
            body, "Warning", "CleanupSkipped", f"{labels.SKIP_CLEANUP} is set: cloud resources are kept"
        )
        return
    selector = labels.selector({labels.BUILD: name})
    for job in await op.kube.list(JOBS, namespace, selector):
        # Background propagation deletes the Pods gracefully: Packer gets SIGTERM and cleans up.
        await op.kube.delete(JOBS, namespace, job["metadata"]["name"], propagation="Background")
    running = [
        p["metadata"]["name"]
        for p in await op.kube.list(PODS, namespace, selector)
        if p.get("status", {}).get("phase") not in ("Succeeded", "Failed")
    ]
    if running:
        raise kopf.TemporaryError(
            f"waiting for build Pods to stop: {', '.join(running)} (annotate {labels.SKIP_CLEANUP}=true to give up)",
            delay=3,
        )
    try:
        build = ImageBuild.model_validate(body)
    except ValidationError as exc:
        await op.kube.event(
            body, "Warning", "CleanupSkipped", f"the ImageBuild is invalid, nothing is cleaned up: {exc}"
        )
        return
    recipe = build.spec.recipe
    policy = annotations.get(labels.DELETION_POLICY) or (
        recipe.retention.deletion_policy if recipe.retention else "Retain"
    )
    referrers = await _referrers(op, build)
    if policy == "Delete" and referrers:
        policy = "Retain"
        await op.kube.event(
            body,
            "Warning",
            "ArtifactsKept",
            f"channels {', '.join(referrers)} still refer to version {build.spec.version}: its artifacts are kept",
        )
    build_id = names.build_id(name, meta.get("uid", ""))
    recorded = {t.name: t for t in (build.status.targets if build.status else [])}
    deleted: list[str] = []
    try:
        for target in recipe.targets:
            cloud = await adapter(op, recipe, target.cloud, namespace)
            if cloud is None:
                if policy == "Delete":
                    message = f"target {target.name}: no {target.cloud} adapter; artifacts kept"
                    await op.kube.event(body, "Warning", "ArtifactsKept", message)
                continue
            # Temporary resources are never wanted, whatever the policy.
            deleted += [str(r) for r in await asyncio.to_thread(cloud.sweep, build_id, regions(target))]
            if policy != "Delete":
                continue
            artifacts = {(a.region, a.id) for a in (recorded[target.name].artifacts if target.name in recorded else [])}
            found = await asyncio.to_thread(cloud.find_artifacts, build_id, regions(target))
            artifacts |= {(r.region, r.id) for r in found}
            for region, artifact in sorted(artifacts):
                try:
                    removed = await asyncio.to_thread(cloud.delete_artifact, region, artifact, build_id)
                except ForeignArtifactError as exc:
                    await op.kube.event(body, "Warning", "ArtifactsKept", f"{exc}: not deleting it")
                    continue
                deleted += [str(r) for r in removed]
    except CloudError as exc:
        hint = f" (annotate {labels.SKIP_CLEANUP}=true to give up)"
        raise kopf.TemporaryError(f"cloud clean-up failed, retrying: {exc}{hint}", delay=30) from exc
    if deleted:
        log.info("ImageBuild %s/%s: deleted %s", namespace, name, ", ".join(deleted))


async def _referrers(op: Operator, build: ImageBuild) -> list[str]:
    """Channels that point at the build, pointed at it, or are pinned to it."""
    channels = await op.kube.list(IMAGECHANNELS, build.metadata.namespace or "")
    return [
        c["metadata"]["name"] for c in channels if build.metadata.name in imagechannels.references(c, build.spec.image)
    ]


# -- kopf wiring -------------------------------------------------------------------------------


@kopf.on.event("goldenimage.io", "v1alpha1", "imagebuilds")
async def on_event(type: str, name: str, namespace: str | None, **_: Any) -> None:
    await current().on_event(IMAGEBUILD, type, namespace, name)


@kopf.on.event("batch", "v1", "jobs", labels={labels.MANAGED_BY: labels.MANAGER, labels.BUILD: kopf.PRESENT})
async def on_job_event(meta: kopf.Meta, namespace: str | None, **_: Any) -> None:
    build = meta.labels.get(labels.BUILD)
    if build and namespace is not None:
        current().trigger(IMAGEBUILD, namespace, build)


@kopf.on.delete("goldenimage.io", "v1alpha1", "imagebuilds")
async def on_delete(body: kopf.Body, **_: Any) -> None:
    await delete(current(), dict(body))
