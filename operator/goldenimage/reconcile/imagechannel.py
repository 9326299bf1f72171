"""Planning an ImageChannel: where the pointer should be, moving it only to builds that are
validated, unrevoked and whose artifacts exist, falling back through history when the current
one stops being usable, keeping a bounded history, and publishing the pointer (pure).

The rule above all: a channel never points at a build that is unvalidated, failed, revoked or
whose artifacts are missing. When nothing usable is left it points nowhere and says why.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from ..api import durations
from ..api.conditions import set_condition
from ..api.goldenimage import Credentials
from ..api.imagechannel import ChannelArtifact, ChannelEntry, ImageChannelStatus, PromotionReason
from ..api.resources import ImageChannel
from ..clouds import registry
from ..clouds.base import Pointer
from ..config import parameter_prefix
from .actions import Action, Emit, Publish, PublishConfigMap
from .usable import FALLBACK, BuildView, Verdict, verdict

CONFIG_MAP = "configMap"


@dataclass(frozen=True)
class PublishOutcome:
    """What the last publication of one kind (a cloud, or the ConfigMap) did."""

    key: str  # what was published (see `Publish.key`)
    ok: bool
    message: str
    at: datetime


@dataclass(frozen=True)
class Following:
    """Whom a channel follows (`source.channel`), and whether a pin or `suspend` holds it."""

    upstream: str | None
    held: bool = False


def upstream_chain(name: str, first: str, following: Mapping[str, Following]) -> tuple[str, ...]:
    """The channels `name` follows, from its upstream `first` on, as far as each follows the
    next; it ends with a name seen before when they follow one another in a cycle. A held
    channel follows nobody: it breaks a loop."""
    chain = [first]
    while chain[-1] != name and chain[-1] not in chain[:-1]:
        upstream = following.get(chain[-1])
        if upstream is None or upstream.held or upstream.upstream is None:
            break
        chain.append(upstream.upstream)
    return tuple(chain)


@dataclass(frozen=True)
class ChannelObservation:
    now: datetime
    builds: Mapping[int, BuildView] = field(default_factory=dict)
    # For `source.channel`: the upstream channel's status, and whether it exists at all.
    upstream: ImageChannelStatus | None = None
    upstream_exists: bool = True
    image_exists: bool = True
    # Whom each channel of the namespace follows, by name: cycles are found through it.
    following: Mapping[str, Following] = field(default_factory=dict)
    # The last publication per cloud (and "configMap"), as the executor recorded it.
    published: Mapping[str, PublishOutcome] = field(default_factory=dict)


@dataclass(frozen=True)
class ChannelSettings:
    # Publication is written again this often even when nothing moved: drift is corrected.
    republish: timedelta = timedelta(minutes=10)
    # The platform's rule for SSM parameter paths (`Config.ssm_parameter_prefix`); None: any.
    ssm_parameter_prefix: str | None = None


@dataclass(frozen=True)
class ChannelPlan:
    status: ImageChannelStatus
    actions: tuple[Action, ...]
    requeue_after: timedelta | None
    moved: bool


class _Planner:
    def __init__(self, channel: ImageChannel, observed: ChannelObservation, settings: ChannelSettings) -> None:
        self.channel = channel
        self.settings = settings
        self.spec = channel.spec
        self.observed = observed
        self.now = observed.now
        self.status = channel.status or ImageChannelStatus()
        self.current = self.status.current
        self.history = list(self.status.history)
        self.actions: list[Action] = []
        self.requeue: list[timedelta] = []
        self.problem: tuple[str, str] | None = None  # (reason, message) for Ready=False
        self.note = ""  # why the channel is where it is, for Ready=True
        self.moved = False

    # -- eligibility -----------------------------------------------------------------------

    def verdict(self, version: int) -> Verdict:
        return verdict(version, self.observed.builds.get(version))

    def usable(self, version: int) -> bool:
        return self.verdict(version).usable

    def entry_verdict(self, entry: ChannelEntry) -> Verdict:
        """An entry names one build: a build of the same version but another identity (another
        name or recipe, e.g. recreated after deletion) is not the one the channel held."""
        build = self.observed.builds.get(entry.version)
        if build is not None and (
            build.name != entry.build or (entry.fingerprint is not None and build.fingerprint != entry.fingerprint)
        ):
            return Verdict(False, "NotFound", f"version {entry.version} is no longer build {entry.build}")
        return self.verdict(entry.version)

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
        if not self.observed.image_exists:
            # Before any policy's own complaint: nothing will ever be built for it.
            self.problem = ("ImageNotFound", f"GoldenImage {self.spec.image} does not exist")
        published = self._publication()
        status = self._status(published)
        return ChannelPlan(status, tuple(self.actions), min(self.requeue) if self.requeue else None, self.moved)

    def _fall_back(self) -> None:
        """The current entry became unusable: the newest usable entry of history replaces it."""
        if self.current is None:
            return
        found = self.entry_verdict(self.current)
        if found.usable:
            return
        assert found.reason is not None
        for entry in self.history:
            if entry.version != self.current.version and self.entry_verdict(entry).usable:
                self.move(entry.version, FALLBACK[found.reason], f"{found.message}; back to version {entry.version}")
                return
        self.clear(f"{found.message}, and no earlier entry of its history is usable")

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
        found = self.verdict(version)
        if not found.usable:
            self.problem = (f"Pinned{found.reason}", f"spec.version {version} cannot be used: {found.message}")
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
        chain = upstream_chain(self.channel.metadata.name, name, self.observed.following)
        if chain[-1] in (self.channel.metadata.name, *chain[:-1]):
            loop = " -> ".join((self.channel.metadata.name, *chain))
            self.problem = ("UpstreamCycle", f"channels follow one another in a cycle ({loop}): pin or suspend one")
            return
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
        found = self.verdict(upstream.version)
        if not found.usable:
            self.problem = (
                f"Upstream{found.reason}",
                f"{name} points at version {upstream.version}, which is unusable: {found.message}",
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

    def _status(self, published: tuple[str, str, str] | None) -> ImageChannelStatus:
        generation = self.channel.metadata.generation
        if self.problem is not None:
            ready = ("False", *self.problem)
        elif self.current is None:
            ready = ("False", "NoVersion", self.note or "no usable version to point at")
        else:
            message = f"version {self.current.version} ({self.current.build})" + (f"; {self.note}" if self.note else "")
            ready = ("True", "Promoted", message)
        conditions = set_condition(self.status.conditions, "Ready", *ready, now=self.now, generation=generation)  # type: ignore[arg-type]
        if published is not None:
            conditions = set_condition(conditions, "Published", *published, now=self.now, generation=generation)  # type: ignore[arg-type]
        else:
            conditions = [c for c in conditions if c.type != "Published"]
        return self.status.model_copy(
            update={
                "observed_generation": generation,
                "current": self.current,
                # A lowered limit applies at once, not at the next move.
                "history": self.history[: self.spec.history_limit],
                "conditions": conditions,
            }
        )

    # -- publication -----------------------------------------------------------------------

    def _publication(self) -> tuple[str, str, str] | None:
        """Plan what must be written where consumers look; the Published condition from what the
        last writes did. None when the channel has nothing to publish."""
        publish = self.spec.publish
        if publish is None:
            return None
        current = list(self.current.artifacts) if self.current is not None else []
        previous = list(self.history[0].artifacts) if self.history else []
        done: list[str] = []
        pending: list[str] = []
        problems: list[str] = []
        for name, kind in registry.KINDS.items():
            section = kind.publish_section(publish)
            if section is None:
                continue
            now_at, before = _pointers(current, name), _pointers(previous, name)
            if not now_at and not before and name not in self.observed.published:
                continue  # this cloud holds none of the image's artifacts: nothing to write there
            if not kind.capabilities.publish:
                problems.append(f"{name}: publication on {name} is not supported")
                continue
            namespace = self.channel.metadata.namespace or ""
            prefix = parameter_prefix(self.settings.ssm_parameter_prefix, namespace)
            if (refusal := kind.publish_refusal(section, namespace, prefix)) is not None:
                problems.append(f"{name}: {refusal}")
                continue  # refused before any cloud call: nothing of this cloud is written
            key = _key(section.model_dump(mode="json"), now_at, before)
            credentials = self._credentials()
            action = Publish(name, section, now_at, before, key, credentials.of(name) if credentials else None)
            self._publish_when_due(name, key, action, done, pending, problems)
        if publish.config_map is not None:
            data = self._config_map_data()
            key = _key({"name": publish.config_map.name}, data)
            label = f"ConfigMap {publish.config_map.name}"
            write = PublishConfigMap(publish.config_map.name, data, key)
            self._publish_when_due(CONFIG_MAP, key, write, done, pending, problems, label=label)
        if not (done or pending or problems):
            return None  # nothing to publish yet: no condition claims otherwise
        if problems:
            return ("False", "PublishFailed", "; ".join(problems)[:1024])
        if pending:
            return ("False", "Publishing", "writing " + ", ".join(pending))
        return ("True", "Published", "published to " + ", ".join(done))

    def _publish_when_due(
        self,
        name: str,
        key: str,
        action: Action,
        done: list[str],
        pending: list[str],
        problems: list[str],
        *,
        label: str = "",
    ) -> None:
        label = label or name
        last = self.observed.published.get(name)
        if last is None or last.key != key:
            # Never written, or it says something else now: write it.
            self.actions.append(action)
            pending.append(label)
            return
        if not last.ok:
            # Written and failed: try again (the executor spaces the retries), say why meanwhile.
            self.actions.append(action)
            problems.append(f"{label}: {last.message}")
            return
        if self.now - last.at >= self.settings.republish:
            self.actions.append(action)  # drift correction; it says the same
        else:
            self.requeue.append(last.at + self.settings.republish - self.now)
        done.append(label)

    def _credentials(self) -> Credentials | None:
        """Publication acts with the identity of the build pointed at, else of the newest build."""
        builds = self.observed.builds
        build = builds.get(self.current.version) if self.current is not None else None
        if build is None and builds:
            build = builds[max(builds)]
        return build.credentials if build is not None else None

    def _config_map_data(self) -> dict[str, str]:
        """The pointer for in-cluster consumers: version, build and artifacts as JSON, plus one
        key per target and region (`<target>.<region>`)."""
        data: dict[str, str] = {"image": self.spec.image, "channel": self.channel.metadata.name}
        entry = self.current
        if entry is not None:
            artifacts = [a.model_dump(mode="json", by_alias=True) for a in entry.artifacts]
            data |= {
                "version": str(entry.version),
                "build": entry.build,
                "promotedAt": entry.promoted_at.isoformat(),
                "artifacts.json": json.dumps(artifacts, indent=2, sort_keys=True),
                **{f"{a.target}.{a.region}": a.id for a in entry.artifacts},
            }
        return data


def _pointers(artifacts: list[ChannelArtifact], cloud: str) -> tuple[Pointer, ...]:
    return tuple(Pointer(target=a.target, region=a.region, image=a.id) for a in artifacts if a.cloud == cloud)


def _key(*parts: object) -> str:
    """A digest of what a publication writes, to tell whether it was written already."""
    text = json.dumps(parts, sort_keys=True, default=lambda o: o.__dict__)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def plan(channel: ImageChannel, observed: ChannelObservation, settings: ChannelSettings | None = None) -> ChannelPlan:
    return _Planner(channel, observed, settings or ChannelSettings()).plan()


def rollback_target(status: ImageChannelStatus, usable: Callable[[int], bool]) -> ChannelEntry | None:
    """The entry `kubectl golden rollback` returns to: the newest history entry of another
    version that is still usable (asked of the newest first, and only until one is)."""
    current = status.current.version if status.current is not None else None
    return next((e for e in status.history if e.version != current and usable(e.version)), None)
