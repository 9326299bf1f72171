"""ImageBuild: gather its Jobs, inputs and what is missing (reconcile/imagebuild.py), or while it
is deleted its Jobs and referrers (reconcile/deletion.py); plan; execute. A finished build is
looked at again only to check that its artifacts still exist."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

import kopf
from pydantic import ValidationError

from ..api import labels
from ..api.conditions import is_true
from ..api.errors import RetryableError
from ..api.group import GROUP, VERSION
from ..api.messages import summary
from ..api.names import inputs as inputs_name
from ..api.resources import ImageBuild
from ..api.types import CloudName
from ..kube.client import CONFIGMAPS, IMAGEBUILDS, SECRETS, SERVICEACCOUNTS
from ..packer.render import Settings
from ..reconcile import deletion
from ..reconcile import imagebuild as planner
from ..reconcile.outcomes import held, of_build
from ..reconcile.usable import references
from . import inputs, objects
from .context import GOLDENIMAGE, IMAGEBUILD, IMAGECHANNEL, Operator, current, log


def terminal(build: ImageBuild) -> bool:
    """Nothing left to do for this generation: the build finished and any revocation was
    carried out."""
    status = build.status
    if status is None or status.observed_generation != build.metadata.generation or not planner.finished(build):
        return False
    return build.spec.revoked is None or is_true(status.conditions, "Deprecated")


async def reconcile(op: Operator, namespace: str, name: str) -> None:
    body = await op.kube.get(IMAGEBUILDS, namespace, name)
    if body is None:
        return
    try:
        build = ImageBuild.model_validate(body)
    except ValidationError as exc:
        if body["metadata"].get("deletionTimestamp"):
            await delete(op, body, None, summary(exc))
        else:
            await objects.report(op.kube, IMAGEBUILDS, body, "InvalidSpec", summary(exc))
        return
    if build.metadata.deletion_timestamp is not None:
        await delete(op, body, build, "")
        return
    check = _artifacts_due(op, build)
    # A finished build is planned again while the result finalizer holds any of its Pods: that
    # plan lets them go.
    if terminal(build) and not check and not held(op.cache.pods(namespace, name)):
        return
    observed = await gather(op, build, check_artifacts=check)
    settings = planner.BuildSettings(
        retry_base=op.config.retry_base,
        retry_cap=op.config.retry_cap,
        render=Settings(communicator=op.config.packer_communicator),
    )
    plan = planner.plan(build, observed, settings)
    await op.executor.execute(IMAGEBUILDS, body, build, plan.status, plan.actions)
    requeue = plan.requeue_after.total_seconds() + 0.5 if plan.requeue_after is not None else None
    if planner.finished(build) and build.spec.revoked is None:
        requeue = min(requeue or op.config.artifact_check.total_seconds(), op.config.artifact_check.total_seconds())
    op.requeue(IMAGEBUILD, namespace, name, requeue)


# When each finished build's artifacts were last checked (monotonic seconds), by UID.
_checked: dict[str, float] = {}


def _artifacts_due(op: Operator, build: ImageBuild) -> bool:
    """Whether to ask the clouds if a validated build's artifacts still exist: they vanish only
    when someone deletes them outside the operator, so this is done at a slow interval."""
    if build.status is None or build.spec.revoked is not None or not is_true(build.status.conditions, "Validated"):
        return False
    last = _checked.get(build.metadata.uid or "")
    return last is None or time.monotonic() - last >= op.config.artifact_check.total_seconds()


async def _missing(op: Operator, build: ImageBuild) -> frozenset[tuple[str, str]] | None:
    """Recorded artifacts gone from their clouds; None when a cloud cannot say now."""
    assert build.status is not None
    recipe, namespace = build.spec.recipe, build.metadata.namespace or ""
    by_cloud: dict[CloudName, list[tuple[str, str]]] = defaultdict(list)
    for target in build.status.targets:
        by_cloud[target.cloud] += [(a.region, a.id) for a in target.artifacts]
    missing: set[tuple[str, str]] = set()
    for cloud, artifacts in by_cloud.items():
        try:
            adapter = await op.clouds.adapter(recipe.credentials_for(cloud), cloud, namespace)
            if adapter is not None:
                missing |= await asyncio.to_thread(adapter.missing_artifacts, artifacts)
        except RetryableError as exc:  # unknown is not missing: the status keeps what it said
            log.warning("ImageBuild %s/%s: cannot check artifacts: %s", namespace, build.metadata.name, exc)
            return None
    _checked[build.metadata.uid or ""] = time.monotonic()
    return frozenset(missing)


async def gather(op: Operator, build: ImageBuild, *, check_artifacts: bool = False) -> planner.BuildObservation:
    namespace, name = build.metadata.namespace or "", build.metadata.name
    outcomes, stray = of_build(op.cache.jobs(namespace, name), op.cache.pods(namespace, name), build.metadata.uid or "")
    config_map = await op.kube.get(CONFIGMAPS, namespace, inputs_name(name))
    contents: dict[str, str] | None = None
    if config_map is None:
        contents = await inputs.read(op.kube, namespace, build.spec.recipe)
    return planner.BuildObservation(
        now=datetime.now(UTC),
        inputs_exist=config_map is not None,
        input_contents=contents,
        missing_secrets=await _missing_secrets(op, build),
        missing_service_accounts=await _missing_service_accounts(op, build),
        jobs=outcomes,
        missing=await _missing(op, build) if check_artifacts else None,
        stray_pods=stray,
    )


async def _missing_service_accounts(op: Operator, build: ImageBuild) -> list[str]:
    if planner.finished(build):
        return []
    recipe = build.spec.recipe
    wanted = {
        c.service_account_name
        for t in recipe.targets
        if (c := recipe.credentials_for(t.cloud)) and c.service_account_name
    }
    namespace = build.metadata.namespace or ""
    return [n for n in sorted(wanted) if await op.kube.get(SERVICEACCOUNTS, namespace, n) is None]


async def _missing_secrets(op: Operator, build: ImageBuild) -> list[str]:
    if planner.finished(build):
        return []
    recipe = build.spec.recipe
    namespace = build.metadata.namespace or ""
    wanted: dict[str, set[str]] = defaultdict(set)
    for variable in recipe.secret_variables:
        wanted[variable.secret_key_ref.name].add(variable.secret_key_ref.key)
    for target in recipe.targets:
        creds = recipe.credentials_for(target.cloud)
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


# -- deletion ----------------------------------------------------------------------------------


async def delete(op: Operator, body: dict[str, Any], build: ImageBuild | None, invalid: str) -> None:
    """Carry out the deletion plan while the operator's finalizer holds the object."""
    meta = body["metadata"]
    if labels.FINALIZER not in (meta.get("finalizers") or []):
        return
    namespace, name = meta["namespace"], meta["name"]
    image = (body.get("spec") or {}).get("image", "")
    observed = deletion.DeletionObservation(
        jobs=[j["metadata"]["name"] for j in op.cache.jobs(namespace, name)],
        running_pods=[
            p["metadata"]["name"]
            for p in op.cache.pods(namespace, name)
            if p.get("status", {}).get("phase") not in ("Succeeded", "Failed")
        ],
        held_pods=held(op.cache.pods(namespace, name)),
        referrers=sorted(c["metadata"]["name"] for c in op.cache.channels(namespace) if name in references(c, image)),
        skip_cleanup=meta.get("annotations", {}).get(labels.SKIP_CLEANUP) == "true",
        invalid=invalid,
    )
    plan = deletion.plan(build, observed)
    await op.executor.execute(IMAGEBUILDS, body, build, None, plan.actions)
    if plan.requeue_after is not None:
        op.requeue(IMAGEBUILD, namespace, name, plan.requeue_after.total_seconds())


# -- kopf wiring -------------------------------------------------------------------------------


@kopf.on.event(GROUP, VERSION, "imagebuilds")
async def on_event(type: str, name: str, namespace: str | None, body: kopf.Body, **_: Any) -> None:
    op = current()
    if namespace is not None:
        # The image summarizes its builds; channels follow them.
        image = body.get("spec", {}).get("image")
        if image:
            op.trigger(GOLDENIMAGE, namespace, image)
            for channel in op.cache.channels(namespace):
                if channel.get("spec", {}).get("image") == image:
                    op.trigger(IMAGECHANNEL, namespace, channel["metadata"]["name"])
    await op.on_event(IMAGEBUILD, type, namespace, name)


@kopf.on.event("batch", "v1", "jobs", labels={labels.MANAGED_BY: labels.MANAGER, labels.BUILD: kopf.PRESENT})
async def on_job_event(meta: kopf.Meta, namespace: str | None, **_: Any) -> None:
    build = meta.labels.get(labels.BUILD)
    if build and namespace is not None:
        current().trigger(IMAGEBUILD, namespace, build)


@kopf.on.event("", "v1", "pods", labels={labels.MANAGED_BY: labels.MANAGER, labels.BUILD: kopf.PRESENT})
async def on_pod_event(meta: kopf.Meta, namespace: str | None, **_: Any) -> None:
    build = meta.labels.get(labels.BUILD)
    if build and namespace is not None:
        current().trigger(IMAGEBUILD, namespace, build)
