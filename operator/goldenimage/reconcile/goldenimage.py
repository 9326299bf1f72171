"""Planning a GoldenImage: whether a new version is needed and why, keeping its builds' deletion
policy in step, and its status (pure)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from ..api import cron, durations
from ..api.conditions import Condition, set_condition
from ..api.goldenimage import GoldenImageStatus
from ..api.imagebuild import BuildReason, ImageBuildSpec
from ..api.resources import GoldenImage
from ..kube import labels, names
from ..packer.fingerprint import fingerprint, image_recipe
from .actions import Action, AnnotateBuild, CreateBuild, DeleteBuild, Emit


@dataclass(frozen=True)
class BuildSummary:
    """What the image's planner needs to know of one of its ImageBuilds."""

    name: str
    version: int
    fingerprint: str
    created: datetime
    recipe: Mapping[str, Any]  # the image-shaping part of the frozen recipe
    sources: Mapping[str, str]
    inputs: Mapping[str, str]
    annotations: Mapping[str, str] = field(default_factory=dict)
    ready: Condition | None = None
    deleting: bool = False
    validated: bool = False
    revoked: bool = False
    finished: bool = True  # no Job of it is running or still to start


@dataclass(frozen=True)
class ImageObservation:
    now: datetime
    runner: str
    builds: Sequence[BuildSummary] = ()
    # Source image per target, for targets whose cloud resolves selectors.
    sources: Mapping[str, str] = field(default_factory=dict)
    source_errors: Mapping[str, str] = field(default_factory=dict)
    # Per cloud: why the recipe's credentials cannot be used now (sources stay unresolved).
    credential_errors: Mapping[str, str] = field(default_factory=dict)
    # Digest of every ConfigMap key the recipe reads ("name/key" -> sha256:...).
    inputs: Mapping[str, str] = field(default_factory=dict)
    missing_inputs: Sequence[str] = ()
    # Builds a channel points at now or in its history: retention never deletes them.
    referenced: frozenset[str] = frozenset()


@dataclass(frozen=True)
class ImagePlan:
    status: GoldenImageStatus
    actions: tuple[Action, ...]
    requeue_after: timedelta | None


def _latest(builds: Sequence[BuildSummary]) -> BuildSummary | None:
    return max(builds, key=lambda b: b.version, default=None)


def _next_rebuild(image: GoldenImage, latest: BuildSummary | None) -> datetime | None:
    policy = image.spec.rebuild
    if policy is None or latest is None:
        return None
    due = []
    if policy.schedule:
        due.append(cron.parse(policy.schedule).next_after(latest.created))
    if policy.max_age:
        due.append(latest.created + durations.parse(policy.max_age))
    return min(due, default=None)


def _retire(keep: int, observed: ImageObservation) -> list[Action]:
    """Delete versions beyond the newest `keep`, except those a channel references (now or in its
    history), the newest validated one, and builds still at work."""
    live = sorted((b for b in observed.builds if not b.deleting), key=lambda b: b.version, reverse=True)
    newest_validated = next((b.name for b in live if b.validated and not b.revoked), None)
    out: list[Action] = []
    for build in live[keep:]:
        if build.name in observed.referenced or build.name == newest_validated or not build.finished:
            continue
        out.append(DeleteBuild(build.name))
        out.append(Emit("Normal", "VersionRetired", f"version {build.version} is beyond keepVersions ({keep})"))
    return out


def plan(image: GoldenImage, observed: ImageObservation) -> ImagePlan:
    spec = image.spec
    now = observed.now
    generation = image.metadata.generation
    status = image.status or GoldenImageStatus()
    conditions = list(status.conditions)
    actions: list[Action] = []
    latest = _latest(observed.builds)
    recipe = image_recipe(spec)

    # Sources: with onSourceChange off, an unchanged recipe keeps the sources it was built from.
    sources = dict(observed.sources)
    follow_sources = spec.rebuild.on_source_change if spec.rebuild else True
    if not follow_sources and latest is not None and latest.recipe == recipe and latest.inputs == observed.inputs:
        sources = {**sources, **latest.sources}
    current = fingerprint(spec, sources=sources, inputs=observed.inputs, runner=observed.runner)

    blocked: tuple[str, str] | None = None
    if observed.missing_inputs:
        blocked = ("MissingConfigMap", "waiting for ConfigMap key " + ", ".join(observed.missing_inputs))
    elif observed.credential_errors:
        blocked = ("MissingCredentials", "; ".join(e for _, e in sorted(observed.credential_errors.items())))
    elif observed.source_errors:
        blocked = ("SourceNotFound", "; ".join(f"{t}: {e}" for t, e in sorted(observed.source_errors.items())))

    reason: BuildReason | None = None
    token = image.metadata.annotations.get(labels.REBUILD, "")
    next_rebuild = _next_rebuild(image, latest)
    if latest is None:
        reason = "Initial"
    elif latest.fingerprint != current:
        if latest.recipe != recipe or latest.inputs != observed.inputs:
            reason = "SpecChanged"
        elif latest.sources != sources:
            reason = "SourceChanged"
        else:
            reason = "RunnerChanged"
    elif (
        token
        and token != status.handled_rebuild_token
        and not any(b.annotations.get(labels.REBUILD_TOKEN) == token for b in observed.builds)
    ):
        reason = "RebuildRequested"
    elif next_rebuild is not None and now >= next_rebuild and latest is not None and latest.finished:
        # Never while the latest build is still at work: a short maxAge must not pile up builds.
        schedule = spec.rebuild.schedule if spec.rebuild else None
        reason = "Scheduled" if schedule and cron.parse(schedule).next_after(latest.created) <= now else "MaxAge"

    policy: str = spec.retention.deletion_policy if spec.retention else "Retain"
    versions = [b.version for b in observed.builds] + [status.latest_version or 0]
    created: CreateBuild | None = None
    if reason is not None and blocked is None:
        version = max(versions) + 1
        name = names.build(image.metadata.name, version)
        annotations = {labels.DELETION_POLICY: policy}
        if token:
            # Whatever made this version, the token present now is answered by it.
            annotations[labels.REBUILD_TOKEN] = token
        created = CreateBuild(
            name=name,
            spec=ImageBuildSpec(
                image=image.metadata.name,
                version=version,
                fingerprint=current,
                reason=reason,
                recipe=spec,
                sources=sources,
                inputs=dict(observed.inputs),
            ),
            annotations=annotations,
        )
        actions.append(created)
        actions.append(Emit("Normal", "VersionCreated", f"version {version} ({reason}): ImageBuild {name}"))
        next_rebuild = None  # recomputed from the new build next time

    for build in observed.builds:
        if not build.deleting and build.annotations.get(labels.DELETION_POLICY) != policy:
            actions.append(AnnotateBuild(build.name, {labels.DELETION_POLICY: policy}))
    actions += _retire(spec.retention.keep_versions if spec.retention else 10, observed)

    # Status: the newest version and what its build says.
    latest_name: str | None = None
    latest_version: int | None = None
    if created is not None:
        latest_name, latest_version = created.name, created.spec.version
        ready: tuple[str, str, str] = ("False", "Building", f"building version {latest_version} ({reason})")
    elif latest is not None:
        latest_name, latest_version = latest.name, latest.version
        if latest.ready is None:
            ready = ("False", "Building", f"building version {latest.version}")
        else:
            ready = (latest.ready.status, latest.ready.reason, f"version {latest.version}: {latest.ready.message}")
    else:
        ready = ("False", "Pending", "no version built yet")
    if blocked is not None:
        ready = ("False", *blocked)
    conditions = set_condition(conditions, "Ready", *ready, now=now, generation=generation)  # type: ignore[arg-type]

    validated = max(
        (b for b in observed.builds if b.validated and not b.revoked and not b.deleting),
        key=lambda b: b.version,
        default=None,
    )
    new_status = status.model_copy(
        update={
            "observed_generation": generation,
            "latest_version": latest_version,
            "latest_build": latest_name,
            "latest_validated_version": validated.version if validated else None,
            "latest_validated_build": validated.name if validated else None,
            "fingerprint": current,
            "sources": sources,
            "last_build_at": now if created is not None else (latest.created if latest else None),
            "next_rebuild_at": next_rebuild,
            "handled_rebuild_token": token if created is not None and token else status.handled_rebuild_token,
            "conditions": conditions,
        }
    )
    requeue = (next_rebuild - now) if next_rebuild is not None and next_rebuild > now else None
    return ImagePlan(new_status, tuple(actions), requeue)
