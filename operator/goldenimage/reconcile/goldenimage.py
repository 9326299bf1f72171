"""Planning a GoldenImage: whether a new version is needed and why, keeping its builds' deletion
policy in step, revoking the versions it declares revoked, and its status (pure)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from ..api import cron, durations, labels, names
from ..api.conditions import Condition, find, set_condition
from ..api.goldenimage import GoldenImageStatus, declared_by
from ..api.imagebuild import BuildReason, ImageBuildSpec, Revocation
from ..api.resources import GoldenImage
from ..packer.fingerprint import fingerprint, image_recipe
from .actions import Action, AnnotateBuild, CreateBuild, DeleteBuild, Emit, RevokeBuild

# The condition that says how the builds stand against spec.revocations.
REVOCATIONS = "Revocations"


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
    revoked_by: str = ""
    finished: bool = True  # no Job of it is running or still to start
    resource_version: str | None = None


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


# Ready reasons of a build that makes progress on its own (a blocked one waits for the user).
AT_WORK = frozenset({"Building", "Validating"})


def _at_work(build: BuildSummary) -> bool:
    """The build still runs or will without anyone's help: a new version waits for it."""
    if build.finished or build.revoked or build.deleting:
        return False
    return build.ready is None or build.ready.reason in AT_WORK


def _latest(builds: Sequence[BuildSummary]) -> BuildSummary | None:
    return max(builds, key=lambda b: b.version, default=None)


def _next_rebuild(image: GoldenImage, latest: BuildSummary | None) -> datetime | None:
    policy = image.spec.rebuild_policy
    if latest is None:
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
        retire = DeleteBuild(build.name)
        message = f"version {build.version} is beyond keepVersions ({keep})"
        out += [retire, Emit("Normal", "VersionRetired", message, announces=retire)]
    return out


def _sources(image: GoldenImage, observed: ImageObservation, latest: BuildSummary | None) -> dict[str, str]:
    """The sources to build from: with onSourceChange off, an unchanged recipe keeps the sources
    it was built from."""
    if image.spec.rebuild_policy.on_source_change or latest is None:
        return dict(observed.sources)
    if latest.recipe == image_recipe(image.spec) and latest.inputs == observed.inputs:
        return {**observed.sources, **latest.sources}
    return dict(observed.sources)


def _blocked(observed: ImageObservation) -> tuple[str, str] | None:
    """(reason, message) when no version can be built now."""
    if observed.missing_inputs:
        return ("MissingConfigMap", "waiting for ConfigMap key " + ", ".join(observed.missing_inputs))
    if observed.credential_errors:
        return ("MissingCredentials", "; ".join(e for _, e in sorted(observed.credential_errors.items())))
    if observed.source_errors:
        return ("SourceNotFound", "; ".join(f"{t}: {e}" for t, e in sorted(observed.source_errors.items())))
    return None


# The status records the token it answered in at most this many characters.
TOKEN_MAX = 256


def rebuild_token(image: GoldenImage) -> str:
    """The rebuild annotation's token as recorded (status, build annotation): a longer one by
    its digest, so that recording it never fails and it is still told apart from others."""
    token = image.metadata.annotations.get(labels.REBUILD, "")
    if len(token) <= TOKEN_MAX:
        return token
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()


def _token_unanswered(image: GoldenImage, observed: ImageObservation) -> bool:
    """A rebuild was requested with a token no version answered yet."""
    token = rebuild_token(image)
    handled = image.status.handled_rebuild_token if image.status is not None else None
    return (
        bool(token)
        and token != handled
        and not any(b.annotations.get(labels.REBUILD_TOKEN) == token for b in observed.builds)
    )


def _reason(
    image: GoldenImage,
    observed: ImageObservation,
    latest: BuildSummary | None,
    sources: Mapping[str, str],
    current: str,
) -> BuildReason | None:
    """Why a new version is needed now, if it is."""
    if latest is None:
        return "Initial"
    if latest.fingerprint != current:
        if latest.recipe != image_recipe(image.spec) or latest.inputs != observed.inputs:
            return "SpecChanged"
        if latest.sources != sources:
            return "SourceChanged"
        return "RunnerChanged"
    if _token_unanswered(image, observed):
        return "RebuildRequested"
    next_rebuild = _next_rebuild(image, latest)
    if next_rebuild is not None and observed.now >= next_rebuild and latest.finished:
        # Never while the latest build is still at work: a short maxAge must not pile up builds.
        schedule = image.spec.rebuild_policy.schedule
        due = schedule and cron.parse(schedule).next_after(latest.created) <= observed.now
        return "Scheduled" if due else "MaxAge"
    return None


def _create(
    image: GoldenImage,
    observed: ImageObservation,
    reason: BuildReason,
    sources: Mapping[str, str],
    current: str,
) -> CreateBuild:
    """The next version: numbered after every version seen, in the builds or in the status, so
    that versions never repeat or go down."""
    status = image.status or GoldenImageStatus()
    version = max([b.version for b in observed.builds] + [status.latest_version or 0]) + 1
    annotations: dict[str, str] = {labels.DELETION_POLICY: image.spec.retention_policy.deletion_policy}
    token = rebuild_token(image)
    if token:
        # Whatever made this version, the token present now is answered by it.
        annotations[labels.REBUILD_TOKEN] = token
    # A version declared revoked before it exists is created revoked: it is never built, and no
    # channel ever sees it usable.
    declared = image.spec.revoked_versions.get(version)
    revoked = None
    if declared is not None:
        revoked = Revocation(reason=declared, revoked_by=declared_by(image.metadata.name), revoked_at=observed.now)
    return CreateBuild(
        name=names.build(image.metadata.name, version),
        spec=ImageBuildSpec(
            image=image.metadata.name,
            version=version,
            fingerprint=current,
            reason=reason,
            # Revocations are not part of the recipe: later ones must not look like a change of it.
            recipe=image.spec.model_copy(update={"revocations": []}),
            sources=dict(sources),
            inputs=dict(observed.inputs),
            revoked=revoked,
        ),
        annotations=annotations,
    )


def _revoke(image: GoldenImage, observed: ImageObservation) -> list[Action]:
    """Revoke every existing build the image declares revoked and nobody has revoked yet; a
    declared version without a build is revoked when it is created (level-based)."""
    declared = image.spec.revoked_versions
    out: list[Action] = []
    for build in sorted(observed.builds, key=lambda b: b.version):
        reason = declared.get(build.version)
        if reason is None or build.revoked or build.deleting:
            continue
        revoke = RevokeBuild(
            build.name, reason, declared_by(image.metadata.name), observed.now, resource_version=build.resource_version
        )
        message = f"version {build.version} revoked as spec.revocations declares: {reason}"
        out += [revoke, Emit("Normal", "VersionRevoked", message, announces=revoke)]
    return out


def _versions(versions: Sequence[int], one: str, several: str) -> str:
    """What is said of some versions: 'version 3 <one>' or 'versions 3, 5 <several>'."""
    listed = ", ".join(map(str, sorted(versions)))
    return f"version {listed} {one}" if len(versions) == 1 else f"versions {listed} {several}"


def _revocations(
    image: GoldenImage, observed: ImageObservation, created: CreateBuild | None
) -> tuple[Literal["True", "False"], str, str] | None:
    """The Revocations condition (status, reason, message); None when the image declares none and
    revoked none."""
    declared = image.spec.revoked_versions
    live = {b.version: b for b in observed.builds if not b.deleting}
    # Revoked because the image declared it, and no longer declared: that cannot be undone, and
    # is said rather than ignored.
    by_image = declared_by(image.metadata.name)
    kept = [v for v, b in live.items() if b.revoked and b.revoked_by == by_image and v not in declared]
    if not declared and not kept:
        return None
    if kept:
        still = _versions(kept, "stays revoked", "stay revoked")
        them = "it" if len(kept) == 1 else "them"
        return (
            "False",
            "CannotWithdraw",
            f"{still} although spec.revocations no longer lists {them}: a revocation cannot be withdrawn; "
            f"build a new version instead (list {them} again to clear this)",
        )
    status = image.status or GoldenImageStatus()
    made = created.spec.version if created is not None else 0
    newest = max([*(b.version for b in observed.builds), status.latest_version or 0, made])
    applied = [v for v in declared if v in live or v == made]
    gone = [v for v in declared if v not in applied and v <= newest]
    future = [v for v in declared if v > newest]
    parts = [_versions(applied, "revoked", "revoked")] if applied else []
    if gone:
        parts.append(_versions(gone, "is gone: nothing to revoke", "are gone: nothing to revoke"))
    if future:
        parts.append(
            _versions(future, "is not built yet: revoked when created", "are not built yet: revoked when created")
        )
    return ("True", "Applied", "; ".join(parts))


def _annotate(image: GoldenImage, observed: ImageObservation) -> list[Action]:
    """Keep every build's deletion policy in step with the image's."""
    policy: str = image.spec.retention_policy.deletion_policy
    return [
        AnnotateBuild(b.name, {labels.DELETION_POLICY: policy})
        for b in observed.builds
        if not b.deleting and b.annotations.get(labels.DELETION_POLICY) != policy
    ]


def _ready(
    created: CreateBuild | None, latest: BuildSummary | None, blocked: tuple[str, str] | None
) -> tuple[str, str, str]:
    """The Ready condition: what blocks the image, else what its newest version's build says."""
    if blocked is not None:
        return ("False", *blocked)
    if created is not None:
        return ("False", "Building", f"building version {created.spec.version} ({created.spec.reason})")
    if latest is None:
        return ("False", "Pending", "no version built yet")
    if latest.ready is None:
        return ("False", "Building", f"building version {latest.version}")
    return (latest.ready.status, latest.ready.reason, f"version {latest.version}: {latest.ready.message}")


def _status(
    image: GoldenImage,
    observed: ImageObservation,
    created: CreateBuild | None,
    blocked: tuple[str, str] | None,
    sources: Mapping[str, str],
    current: str,
) -> GoldenImageStatus:
    """The image's status: its newest version, its newest validated one, and when it rebuilds."""
    now, generation = observed.now, image.metadata.generation
    status = image.status or GoldenImageStatus()
    latest = _latest(observed.builds)
    newest = (created.name, created.spec.version) if created is not None else None
    if newest is None and latest is not None:
        newest = (latest.name, latest.version)
    ready = _ready(created, latest, blocked)
    conditions = set_condition(list(status.conditions), "Ready", *ready, now=now, generation=generation)  # type: ignore[arg-type]
    validated = max(
        (b for b in observed.builds if b.validated and not b.revoked and not b.deleting),
        key=lambda b: b.version,
        default=None,
    )
    token = rebuild_token(image)
    return status.model_copy(
        update={
            "observed_generation": generation,
            # A high-water mark: with the newest builds deleted the number stays, so the next
            # version is numbered after it and no channel mistakes it for one it held before.
            "latest_version": max(newest[1] if newest else 0, status.latest_version or 0) or None,
            "latest_build": newest[0] if newest else None,
            "latest_validated_version": validated.version if validated else None,
            "latest_validated_build": validated.name if validated else None,
            "fingerprint": current,
            "sources": dict(sources),
            "last_build_at": now if created is not None else (latest.created if latest else None),
            # A new build's schedule is computed from it next time.
            "next_rebuild_at": None if created is not None else _next_rebuild(image, latest),
            # Answered by a build made now or still present: recorded, so that retiring that
            # build later does not make the same token ask again.
            "handled_rebuild_token": token
            if token and (created is not None or not _token_unanswered(image, observed))
            else status.handled_rebuild_token,
            "conditions": conditions,
        }
    )


def _with_revocations(
    image: GoldenImage, observed: ImageObservation, created: CreateBuild | None, status: GoldenImageStatus
) -> tuple[GoldenImageStatus, list[Action]]:
    """The status with its Revocations condition, and a Warning when a revocation the image no
    longer declares is newly found kept (once, not at every resync)."""
    found = _revocations(image, observed, created)
    if found is None:
        return status.model_copy(update={"conditions": [c for c in status.conditions if c.type != REVOCATIONS]}), []
    conditions = set_condition(
        status.conditions, REVOCATIONS, *found, now=observed.now, generation=image.metadata.generation
    )
    old = find(image.status.conditions, REVOCATIONS) if image.status is not None else None
    said: list[Action] = []
    if found[0] == "False" and (old is None or (old.reason, old.message) != found[1:]):
        said.append(Emit("Warning", "RevocationNotWithdrawn", found[2]))
    return status.model_copy(update={"conditions": conditions}), said


def plan(image: GoldenImage, observed: ImageObservation) -> ImagePlan:
    latest = _latest(observed.builds)
    sources = _sources(image, observed, latest)
    current = fingerprint(image.spec, sources=sources, inputs=observed.inputs, runner=observed.runner)
    blocked = _blocked(observed)
    reason = _reason(image, observed, latest, sources, current)
    if reason is not None and blocked is None and latest is not None and _at_work(latest):
        # One unfinished version per image: edits made meanwhile are built together, next.
        blocked = ("Building", f"version {latest.version} is still at work; a new version ({reason}) starts after it")
        reason = None
    actions: list[Action] = []
    created: CreateBuild | None = None
    if reason is not None and blocked is None:
        created = _create(image, observed, reason, sources, current)
        message = f"version {created.spec.version} ({reason}): ImageBuild {created.name}"
        actions += [created, Emit("Normal", "VersionCreated", message, announces=created)]
    actions += _revoke(image, observed)
    actions += _annotate(image, observed)
    actions += _retire(image.spec.retention_policy.keep_versions, observed)
    status = _status(image, observed, created, blocked, sources, current)
    status, said = _with_revocations(image, observed, created, status)
    actions += said
    next_rebuild, now = status.next_rebuild_at, observed.now
    requeue = (next_rebuild - now) if next_rebuild is not None and next_rebuild > now else None
    return ImagePlan(status, tuple(actions), requeue)
