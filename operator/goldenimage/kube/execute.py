"""The one place plans are carried out: actions before the status (in order), one conditional
status write when the status changed, actions that act on what the status now says, and Events
last (when a step fails, those announcing actions already carried out are still sent). Planners
decide; this module only does, and reports what the cloud or the API server said."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from ..api import labels
from ..api.errors import CloudError, ForeignArtifactError, GoneError, OwnedByAnotherError, PermanentError
from ..api.identity import BuildIdentity
from ..api.imagebuild import revocation_patch
from ..api.resources import CustomResource, GoldenImage, ImageBuild, ImageChannel, ObjectMeta
from ..clouds import registry
from ..clouds.base import CloudApi, PublishScope
from ..config import Config
from ..reconcile import actions as a
from . import jobs, objects
from .client import CONFIGMAPS, IMAGEBUILDS, JOBS, PODS, Kind, Kube
from .credentials import CloudAccess
from .ledger import PublicationLedger

log = logging.getLogger("goldenimage")

# After a publication, look again at once to record it; after a failed one, a while later.
PUBLISHED_RECHECK = 0.0
PUBLISH_RETRY = 30.0


@dataclass
class Executed:
    """What carrying out a plan asks of the next reconcile."""

    requeue_after: float | None = None

    def sooner(self, seconds: float) -> None:
        self.requeue_after = seconds if self.requeue_after is None else min(self.requeue_after, seconds)


@dataclass
class _Pass:
    """One plan being carried out: on what, and how far it got."""

    kind: Kind
    body: dict[str, Any]
    meta: ObjectMeta
    obj: CustomResource | None
    # The status write is conditional on this: the version the plan was made from, or the one
    # this pass's own conditional writes to the object produced since.
    resource_version: str | None
    done: Executed = field(default_factory=Executed)
    carried_out: list[a.Action] = field(default_factory=list)

    @property
    def namespace(self) -> str:
        return self.meta.namespace or ""


def _announces_one_of(event: a.Emit, actions: Sequence[a.Action]) -> bool:
    return event.announces is not None and any(event.announces is done for done in actions)


class Executor:
    def __init__(self, kube: Kube, clouds: CloudAccess, config: Config, ledger: PublicationLedger) -> None:
        self.kube = kube
        self.clouds = clouds
        self.config = config
        self.ledger = ledger

    async def execute(
        self,
        kind: Kind,
        body: dict[str, Any],
        obj: CustomResource | None,
        status: BaseModel | None,
        actions: Sequence[a.Action],
    ) -> Executed:
        """Carry out `actions` for the object read as `body` (`obj`: its model, None when the
        models refuse it) and record `status` if it changed, conditional on the resourceVersion
        the plan was made from. When a step fails (a conflicting status write, say), the Events
        that announce actions already carried out are still sent before the error propagates:
        the plan made again finds those actions done and has nothing to announce."""
        meta = ObjectMeta.model_validate(body["metadata"])
        run = _Pass(kind, body, meta, obj, meta.resource_version)
        events = [e for e in actions if isinstance(e, a.Emit)]
        try:
            await self._carry_out(run, [x for x in actions if not x.after_status and not isinstance(x, a.Emit)])
            await self._write_status(run, status)
            await self._carry_out(run, [x for x in actions if x.after_status])
        except GoneError:
            raise  # the object went away: no Event on what is not there
        except Exception:
            await self._send(run, [e for e in events if _announces_one_of(e, run.carried_out)])
            raise
        await self._send(run, events)
        return run.done

    async def _carry_out(self, run: _Pass, actions: Sequence[a.Action]) -> None:
        for action in actions:
            await self._do(action, run)
            run.carried_out.append(action)

    async def _write_status(self, run: _Pass, status: BaseModel | None) -> None:
        if status is None:
            return
        new = status.model_dump(mode="json", by_alias=True, exclude_none=True)
        old = run.body.get("status") or {}
        if new != old:
            await self.kube.write_status(
                run.kind, run.namespace, run.meta.name, new, resource_version=run.resource_version, old=old
            )

    async def _send(self, run: _Pass, events: Sequence[a.Emit]) -> None:
        for event in events:
            await self.kube.event(run.body, event.type, event.reason, event.message)

    # -- one action ------------------------------------------------------------------------

    async def _do(self, action: a.Action, run: _Pass) -> None:
        obj, namespace = run.obj, run.namespace
        match action:
            case a.CreateBuild():
                assert isinstance(obj, GoldenImage)
                await self.kube.create(IMAGEBUILDS, namespace, objects.image_build(obj, action))
            case a.DeleteBuild(name=name):
                await self.kube.delete(IMAGEBUILDS, namespace, name)
            case a.AnnotateBuild(name=name, annotations=annotations):
                await self.kube.merge_patch(IMAGEBUILDS, namespace, name, {"metadata": {"annotations": annotations}})
            case a.RevokeBuild():
                patch = revocation_patch(
                    action.reason, action.revoked_by, action.revoked_at, resource_version=action.resource_version
                )
                # A build deleted meanwhile needs no revocation; one changed meanwhile is planned again.
                with contextlib.suppress(GoneError):
                    await self.kube.merge_patch(IMAGEBUILDS, namespace, action.name, patch)
            case a.CreateInputs(data=data):
                assert isinstance(obj, ImageBuild)
                await self.kube.create(CONFIGMAPS, namespace, objects.inputs_config_map(obj, data))
            case a.CreateJob(target=target, attempt=attempt):
                assert isinstance(obj, ImageBuild)
                job = jobs.build_job(obj, obj.spec.recipe.target(target), attempt, self.config)
                await self.kube.create(JOBS, namespace, job)
            case a.CreateValidationJob():
                assert isinstance(obj, ImageBuild)
                target_ = obj.spec.recipe.target(action.target)
                job = jobs.validation_job(obj, target_, action.region, action.artifact, action.attempt, self.config)
                await self.kube.create(JOBS, namespace, job)
            case a.DeleteJob(name=name):
                await self.kube.delete(JOBS, namespace, name)
            case a.ReleasePods(pods=pods):
                for pod in pods:
                    await self.kube.remove_finalizer(PODS, namespace, pod, labels.RESULT_FINALIZER)
            case a.AddFinalizer():
                await self._finalizers(run, [*run.meta.finalizers, labels.FINALIZER])
            case a.RemoveFinalizer():
                await self._finalizers(run, [f for f in run.meta.finalizers if f != labels.FINALIZER])
            case a.SweepAttempt() | a.SweepBuild():
                assert isinstance(obj, ImageBuild)
                await self._sweep(obj, action)
            case a.DeprecateArtifacts():
                assert isinstance(obj, ImageBuild)
                await self._deprecate(obj, action)
            case a.DeleteArtifacts():
                assert isinstance(obj, ImageBuild)
                await self._delete_artifacts(obj, action)
            case a.Publish():
                assert isinstance(obj, ImageChannel)
                await self._publish(obj, action, run.done)
            case a.PublishConfigMap():
                assert isinstance(obj, ImageChannel)
                await self._publish_config_map(obj, action, run.done)
            case _:
                raise TypeError(f"no way to carry out {type(action).__name__}")

    async def _finalizers(self, run: _Pass, finalizers: list[str]) -> None:
        patch = {"metadata": {"finalizers": finalizers, "resourceVersion": run.resource_version}}
        patched = await self.kube.merge_patch(run.kind, run.namespace, run.meta.name, patch)
        # The patch was conditional, so nobody else wrote in between: the version it produced
        # is still the object the plan was made from, and the status write may build on it.
        run.resource_version = patched["metadata"]["resourceVersion"]

    async def _cloud(self, build: ImageBuild, target_name: str) -> tuple[CloudApi, BuildIdentity, list[str]]:
        target = build.spec.recipe.target(target_name)
        recipe = build.spec.recipe
        cloud = await self.clouds.adapter(
            recipe.credentials_for(target.cloud), target.cloud, build.metadata.namespace or ""
        )
        if cloud is None:
            raise CloudError(f"no {target.cloud} adapter")
        return cloud, BuildIdentity.of(build), list(registry.of(target).regions(target))

    async def _sweep(self, build: ImageBuild, action: a.SweepAttempt | a.SweepBuild) -> None:
        cloud, identity, regions = await self._cloud(build, action.target)
        attempt = action.attempt if isinstance(action, a.SweepAttempt) else None
        swept = await asyncio.to_thread(cloud.sweep, identity.build_id, regions, action.target, attempt)
        if swept:
            log.info("ImageBuild %s: deleted leftovers %s", build.metadata.name, ", ".join(map(str, swept)))

    async def _deprecate(self, build: ImageBuild, action: a.DeprecateArtifacts) -> None:
        body = objects.reference(build)
        for target, region, artifact in action.artifacts:
            cloud, _, _ = await self._cloud(build, target)
            note = await asyncio.to_thread(cloud.deprecate, region, artifact, action.reason)
            if note:
                await self.kube.event(body, "Warning", "DeprecationPartial", note)

    async def _delete_artifacts(self, build: ImageBuild, action: a.DeleteArtifacts) -> None:
        cloud, identity, regions = await self._cloud(build, action.target)
        artifacts = set(action.recorded)
        found = await asyncio.to_thread(cloud.find_artifacts, identity.build_id, regions)
        artifacts |= {(r.region, r.id) for r in found}
        for region, artifact in sorted(artifacts):
            try:
                removed = await asyncio.to_thread(cloud.delete_artifact, region, artifact, identity.build_id)
            except ForeignArtifactError as exc:
                body = objects.reference(build)
                await self.kube.event(body, "Warning", "ArtifactsKept", f"{exc}: not deleting it")
                continue
            log.info("ImageBuild %s: deleted %s", build.metadata.name, ", ".join(map(str, removed)))

    async def _publish(self, channel: ImageChannel, action: a.Publish, done: Executed) -> None:
        meta = channel.metadata
        namespace = meta.namespace or ""
        scope = PublishScope(
            namespace=namespace,
            image=channel.spec.image,
            channel=meta.name,
            uid=meta.uid or "",
            parameter_prefix=self.config.parameter_prefix(namespace),
        )
        try:
            cloud = await self._publisher(channel, action)
            changes = await asyncio.to_thread(cloud.publish, scope, action.section, action.current, action.previous)
        except (CloudError, PermanentError) as exc:
            # A refusal too is recorded, not raised: the channel's status says why, and its other
            # clouds are still published. Both are tried again a while later.
            self.ledger.record(meta.uid or "", action.cloud, action.key, False, str(exc))
            done.sooner(PUBLISH_RETRY)
            return
        for change in changes:
            log.info("ImageChannel %s/%s: %s", scope.namespace, meta.name, change)
        self.ledger.record(meta.uid or "", action.cloud, action.key, True, "; ".join(changes))
        done.sooner(PUBLISHED_RECHECK)

    async def _publisher(self, channel: ImageChannel, action: a.Publish) -> CloudApi:
        cloud = await self.clouds.adapter(action.credentials, action.cloud, channel.metadata.namespace or "")
        if cloud is None:
            raise CloudError(f"no {action.cloud} adapter to publish with")
        return cloud

    async def _publish_config_map(self, channel: ImageChannel, action: a.PublishConfigMap, done: Executed) -> None:
        meta = channel.metadata
        namespace = meta.namespace or ""
        body = objects.channel_config_map(channel, action.name, action.data)
        try:
            existing = await self.kube.create(CONFIGMAPS, namespace, body)
            if existing.get("data") != dict(action.data):
                body["metadata"]["resourceVersion"] = existing["metadata"]["resourceVersion"]
                await self.kube.replace(CONFIGMAPS, namespace, action.name, body)
        except OwnedByAnotherError:
            message = f"ConfigMap {action.name} exists and is not this channel's; it is left alone"
            self.ledger.record(meta.uid or "", "configMap", action.key, False, message)
            done.sooner(PUBLISH_RETRY)
            return
        self.ledger.record(meta.uid or "", "configMap", action.key, True, f"ConfigMap {action.name}")
        done.sooner(PUBLISHED_RECHECK)
