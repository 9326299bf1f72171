"""Planning an ImageBuild's deletion (pure): stop its Jobs, release its Pods, sweep what its builds left, apply the
deletion policy to its artifacts unless a channel still refers to the version, then let it go."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

from ..api import labels
from ..api.resources import ImageBuild
from ..clouds import registry
from .actions import Action, DeleteArtifacts, DeleteJob, Emit, ReleaseBuildPods, RemoveFinalizer, SweepBuild

# How often to look again while the build's Pods stop (Packer cleans up after SIGTERM).
POD_WAIT = timedelta(seconds=3)


@dataclass(frozen=True)
class DeletionObservation:
    jobs: Sequence[str] = ()  # the build's Jobs that still exist
    running_pods: Sequence[str] = ()  # its Pods that have not stopped yet
    held_pods: Sequence[str] = ()  # its Pods that the operator's result finalizer keeps
    referrers: Sequence[str] = ()  # channels that point at the build, pointed at it, or are pinned to it
    skip_cleanup: bool = False  # a user gave up on the clean-up
    invalid: str = ""  # why the models refuse the object: nothing of it can be trusted then


@dataclass(frozen=True)
class DeletionPlan:
    actions: tuple[Action, ...]
    requeue_after: timedelta | None


def policy(build: ImageBuild) -> Literal["Retain", "Delete"]:
    """The deletion policy: the one the GoldenImage had when the build was last annotated."""
    annotated = build.metadata.annotations.get(labels.DELETION_POLICY)
    if annotated in ("Retain", "Delete"):
        return annotated  # type: ignore[return-value]
    return build.spec.recipe.retention_policy.deletion_policy


def plan(build: ImageBuild | None, observed: DeletionObservation) -> DeletionPlan:
    """`build` is None when the models refuse the object (observed.invalid says why)."""
    actions: list[Action] = [DeleteJob(job) for job in observed.jobs]
    if observed.held_pods:
        # Whatever they reported is no longer wanted; a Pod still running stops as its Job goes.
        actions.append(ReleaseBuildPods(tuple(observed.held_pods)))
    if observed.skip_cleanup:
        message = f"{labels.SKIP_CLEANUP} is set: cloud resources are kept"
        return DeletionPlan((*actions, Emit("Warning", "CleanupSkipped", message), RemoveFinalizer()), None)
    if observed.running_pods:
        # Deleting a Job stops its Pod gracefully: Packer gets SIGTERM and cleans up first.
        return DeletionPlan(tuple(actions), POD_WAIT)
    if build is None:
        message = f"the ImageBuild is invalid, nothing is cleaned up: {observed.invalid}"
        return DeletionPlan((*actions, Emit("Warning", "CleanupSkipped", message), RemoveFinalizer()), None)
    delete = policy(build) == "Delete"
    if delete and observed.referrers:
        delete = False
        channels = ", ".join(observed.referrers)
        message = f"channels {channels} still refer to version {build.spec.version}: its artifacts are kept"
        actions.append(Emit("Warning", "ArtifactsKept", message))
    recorded = {t.name: t for t in (build.status.targets if build.status else [])}
    for target in build.spec.recipe.targets:
        cloud = registry.of(target)
        # Temporary resources are never wanted, whatever the policy.
        if cloud.capabilities.sweep:
            actions.append(SweepBuild(target.name))
        if not delete:
            continue
        if cloud.capabilities.delete:
            artifacts = recorded[target.name].artifacts if target.name in recorded else []
            actions.append(DeleteArtifacts(target.name, tuple((a.region, a.id) for a in artifacts)))
        else:
            message = f"target {target.name}: artifacts on {cloud.name} cannot be deleted by the operator; kept"
            actions.append(Emit("Warning", "ArtifactsKept", message))
    actions.append(RemoveFinalizer())
    return DeletionPlan(tuple(actions), None)
