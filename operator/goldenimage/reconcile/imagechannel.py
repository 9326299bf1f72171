"""Planning an ImageChannel: where the pointer should be, moving it only to builds that are
validated, unrevoked and whose artifacts exist, falling back through history when the current
one stops being usable, and keeping a bounded history (pure).

The rule above all: a channel never points at a build that is unvalidated, failed, revoked or
whose artifacts are missing. When nothing usable is left it points nowhere and says why.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from ..api import durations
from ..api.conditions import set_condition
from ..api.imagechannel import ChannelArtifact, ChannelEntry, ImageChannelStatus, PromotionReason
from ..api.resources import ImageChannel
from .actions import Emit


@dataclass(frozen=True)
class BuildView:
    """What a channel needs to know of one build of its image."""

    name: str
    version: int
    fingerprint: str
    artifacts: tuple[ChannelArtifact, ...]
    validated_at: datetime | None = None  # when Validated turned True; None when it is not
    revoked: str | None = None  # the revocation reason
    state: str = ""  # the build's Ready reason, for messages


@dataclass(frozen=True)
class ChannelObservation:
    now: datetime
    builds: Mapping[int, BuildView] = field(default_factory=dict)
    # For `source.channel`: the upstream channel's status, and whether it exists at all.
    upstream: ImageChannelStatus | None = None
    upstream_exists: bool = True
    # Artifacts, as (region, id), that no longer exist in their cloud.
    missing: frozenset[tuple[str, str]] = frozenset()


@dataclass(frozen=True)
class ChannelPlan:
    status: ImageChannelStatus
    actions: tuple[Emit, ...]
    requeue_after: timedelta | None
    moved: bool


Verdict = tuple[Literal[True], None, None] | tuple[Literal[False], str, str]

# The history reason of a fallback, by why the entry it replaced became unusable.
FALLBACK: dict[str, PromotionReason] = {
    "NotFound": "BuildMissing",
    "Revoked": "Revoked",
    "NotValidated": "NotValidated",
    "ArtifactsMissing": "ArtifactsMissing",
}


class _Planner:
    def __init__(self, channel: ImageChannel, observed: ChannelObservation) -> None:
        self.channel = channel
        self.spec = channel.spec
        self.observed = observed
        self.now = observed.now
        self.status = channel.status or ImageChannelStatus()
        self.current = self.status.current
        self.history = list(self.status.history)
        self.actions: list[Emit] = []
        self.requeue: list[timedelta] = []
        self.problem: tuple[str, str] | None = None  # (reason, message) for Ready=False
        self.note = ""  # why the channel is where it is, for Ready=True
        self.moved = False

    # -- eligibility -----------------------------------------------------------------------

    def verdict(self, version: int) -> Verdict:
        build = self.observed.builds.get(version)
        if build is None:
            return (False, "NotFound", f"version {version} has no ImageBuild")
        if build.revoked is not None:
            return (False, "Revoked", f"version {version} is revoked: {build.revoked}")
        if build.validated_at is None or not build.artifacts:
            state = f" ({build.state})" if build.state else ""
            return (False, "NotValidated", f"version {version} is not validated{state}")
        gone = [a for a in build.artifacts if (a.region, a.id) in self.observed.missing]
        if gone:
            listed = ", ".join(f"{a.id} in {a.region}" for a in gone)
            return (False, "ArtifactsMissing", f"version {version} lost artifacts: {listed}")
        return (True, None, None)

    def usable(self, version: int) -> bool:
        return self.verdict(version)[0]

    # -- moves -----------------------------------------------------------------------------

    def move(self, version: int, reason: PromotionReason, message: str) -> None:
        build = self.observed.builds[version]
        entry = ChannelEntry(
            version=version,
            build=build.name,
            fingerprint=build.fingerprint,
            artifacts=list(build.artifacts),
            promoted_at=self.now,
            reason=reason,
            message=message,
        )
        self._replace(entry)
        self.actions.append(
            Emit("Normal", "Promoted", f"{self.channel.metadata.name} -> version {version} ({reason}): {message}")
        )

    def clear(self, message: str) -> None:
        self._replace(None)
        self.actions.append(
            Emit("Warning", "NoUsableVersion", f"{self.channel.metadata.name} points nowhere: {message}")
        )

    def _replace(self, entry: ChannelEntry | None) -> None:
        if self.current is not None:
            self.history.insert(0, self.current)
        del self.history[self.spec.history_limit :]
        self.current = entry
        self.moved = True

    # -- the plan --------------------------------------------------------------------------

    def plan(self) -> ChannelPlan:
        self._fall_back()
        self._follow_policy()
        return ChannelPlan(self._status(), tuple(self.actions), min(self.requeue) if self.requeue else None, self.moved)

    def _fall_back(self) -> None:
        """The current entry became unusable: the newest usable entry of history replaces it."""
        if self.current is None:
            return
        ok, reason, message = self.verdict(self.current.version)
        if ok:
            return
        assert reason is not None and message is not None
        for entry in self.history:
            if entry.version != self.current.version and self.usable(entry.version):
                self.move(entry.version, FALLBACK[reason], f"{message}; back to version {entry.version}")
                return
        self.clear(f"{message}, and no earlier entry of its history is usable")

    def _follow_policy(self) -> None:
        spec = self.spec
        if spec.version is not None:
            self._pinned(spec.version)
        elif spec.suspend:
            self.note = "suspended: the pointer does not move"
        elif spec.source is not None and spec.source.latest_validated is not None:
            self._latest_validated()
        elif spec.source is not None and spec.source.channel is not None:
            self._upstream(spec.source.channel)

    def _soak(self) -> timedelta:
        source = self.spec.source
        return durations.parse(source.min_soak) if source is not None and source.min_soak else timedelta(0)

    def _pinned(self, version: int) -> None:
        if self.current is not None and self.current.version == version:
            self.note = f"pinned to version {version}"
            return
        ok, reason, message = self.verdict(version)
        if not ok:
            assert message is not None
            self.problem = (f"Pinned{reason}", f"spec.version {version} cannot be used: {message}")
            return
        older = self.current is not None and version < self.current.version
        self.move(version, "Rollback" if older else "Pinned", f"spec.version is {version}")
        self.note = f"pinned to version {version}"

    def _latest_validated(self) -> None:
        soak = self._soak()
        usable = sorted((v for v in self.observed.builds if self.usable(v)), reverse=True)
        for version in usable:
            if self.current is not None and version <= self.current.version:
                break  # policies move forward; only a fallback or a pin moves back
            validated_at = self.observed.builds[version].validated_at
            assert validated_at is not None
            ready_at = validated_at + soak
            if self.now >= ready_at:
                self.move(version, "LatestValidated", f"newest validated version of {self.spec.image}")
                break
            self.requeue.append(ready_at - self.now)
            self.note = f"version {version} soaks until {ready_at.isoformat()}"
        if not self.note:
            self.note = "at the newest validated version" if self.current is not None else ""
        if self.current is None and not usable:
            self.problem = ("NoValidatedVersion", f"{self.spec.image} has no validated, unrevoked version yet")

    def _upstream(self, name: str) -> None:
        if not self.observed.upstream_exists:
            self.problem = ("UpstreamNotFound", f"upstream channel {name} does not exist")
            return
        upstream = self.observed.upstream.current if self.observed.upstream is not None else None
        if upstream is None:
            self.problem = ("UpstreamEmpty", f"upstream channel {name} points at no version yet")
            return
        if self.current is not None and self.current.version == upstream.version:
            self.note = f"following {name} at version {upstream.version}"
            return
        ok, reason, message = self.verdict(upstream.version)
        if not ok:
            assert message is not None
            self.problem = (
                f"Upstream{reason}",
                f"{name} points at version {upstream.version}, which is unusable: {message}",
            )
            return
        ready_at = upstream.promoted_at + self._soak()
        if self.now < ready_at:
            self.requeue.append(ready_at - self.now)
            self.note = f"version {upstream.version} from {name} soaks until {ready_at.isoformat()}"
            return
        self.move(
            upstream.version, "UpstreamChannel", f"{name} has pointed at it since {upstream.promoted_at.isoformat()}"
        )
        self.note = f"following {name} at version {upstream.version}"

    # -- status ----------------------------------------------------------------------------

    def _status(self) -> ImageChannelStatus:
        generation = self.channel.metadata.generation
        if self.problem is not None:
            ready = ("False", *self.problem)
        elif self.current is None:
            ready = ("False", "NoVersion", self.note or "no usable version to point at")
        else:
            message = f"version {self.current.version} ({self.current.build})" + (f"; {self.note}" if self.note else "")
            ready = ("True", "Promoted", message)
        conditions = set_condition(self.status.conditions, "Ready", *ready, now=self.now, generation=generation)  # type: ignore[arg-type]
        return self.status.model_copy(
            update={
                "observed_generation": generation,
                "current": self.current,
                "history": self.history,
                "conditions": conditions,
            }
        )


def plan(channel: ImageChannel, observed: ChannelObservation) -> ChannelPlan:
    return _Planner(channel, observed).plan()


def rollback_target(status: ImageChannelStatus, usable: Callable[[int], bool]) -> ChannelEntry | None:
    """The entry `kubectl golden rollback` returns to: the newest history entry of another
    version that is still usable (asked of the newest first, and only until one is)."""
    current = status.current.version if status.current is not None else None
    return next((e for e in status.history if e.version != current and usable(e.version)), None)
