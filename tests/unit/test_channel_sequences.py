"""Generated sequences for the channel planner: builds appear, validate, fail, get revoked, lose
artifacts or are deleted; time passes; the prod channel is pinned, unpinned, suspended and its
history limit changed. Two channels are planned after every step (`candidate` on
latestValidated, `prod` following it with a soak), each from its own last status, and the
promises of the channel hold after every step:

- a channel never points at a build that is unvalidated, revoked, deleted, another build of
  the same version, or missing artifacts;
- history never exceeds its limit, and never holds the current entry twice in a row;
- a policy move waits for the soak and never goes back; a pin is the only way back;
- planning the result again (nothing changed) moves nothing and emits nothing;
- no planner raises.

`GOLDENIMAGE_EXAMPLES=10000` runs more examples than the default.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from goldenimage.api.imagechannel import ChannelArtifact, ChannelEntry, ImageChannelStatus
from goldenimage.api.resources import ImageChannel
from goldenimage.reconcile.imagechannel import ChannelObservation, ChannelPlan, Following, plan
from goldenimage.reconcile.usable import BuildView, verdict
from support import generated

START = datetime(2026, 11, 21, tzinfo=UTC)
CANDIDATE_SOAK = timedelta(hours=2)
PROD_SOAK = timedelta(hours=24)


def _artifacts(version: int) -> tuple[ChannelArtifact, ...]:
    return tuple(
        ChannelArtifact(target="aws-eu", cloud="aws", region=region, id=f"ami-{region}-{version}")
        for region in ("eu-west-1", "us-east-1")
    )


def _channel(name: str, spec: dict[str, Any], status: ImageChannelStatus) -> ImageChannel:
    return ImageChannel.model_validate(
        {
            "metadata": {"name": name, "namespace": "platform", "generation": 1},
            "spec": {"image": "web-base", **spec},
            "status": status.model_dump(mode="json", by_alias=True, exclude_none=True),
        }
    )


class Channels(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.now = START
        self.next_version = 1
        self.builds: dict[int, BuildView] = {}
        self.generation: dict[int, int] = {}  # how often a version's build was recreated
        self.status = {"candidate": ImageChannelStatus(), "prod": ImageChannelStatus()}
        self.pinned: int | None = None
        self.suspend = False
        self.history_limit = 3
        self.last: dict[str, ChannelPlan] = {}
        self.before: dict[str, ChannelEntry | None] = {"candidate": None, "prod": None}

    # -- the world ------------------------------------------------------------------------

    @rule(validated=st.booleans())
    def new_build(self, validated: bool) -> None:
        version = self.next_version
        self.next_version += 1
        self.builds[version] = BuildView(
            name=f"web-base-{version}",
            version=version,
            fingerprint=f"sha256:{version:064x}",
            artifacts=_artifacts(version),
            validated_at=self.now if validated else None,
            state="Validated" if validated else "Building",
        )

    @precondition(lambda self: self.builds)
    @rule(data=st.data())
    def validate(self, data: st.DataObject) -> None:
        version = data.draw(st.sampled_from(sorted(self.builds)))
        build = self.builds[version]
        if build.validated_at is None:
            self.builds[version] = dataclasses.replace(build, validated_at=self.now, state="Validated")

    @precondition(lambda self: self.builds)
    @rule(data=st.data())
    def revoke(self, data: st.DataObject) -> None:
        version = data.draw(st.sampled_from(sorted(self.builds)))
        self.builds[version] = dataclasses.replace(self.builds[version], revoked="CVE-2026-0001")

    @precondition(lambda self: self.builds)
    @rule(data=st.data())
    def lose_an_artifact(self, data: st.DataObject) -> None:
        version = data.draw(st.sampled_from(sorted(self.builds)))
        build = self.builds[version]
        self.builds[version] = dataclasses.replace(build, missing=build.artifacts[:1])

    @precondition(lambda self: self.builds)
    @rule(data=st.data())
    def delete_build(self, data: st.DataObject) -> None:
        del self.builds[data.draw(st.sampled_from(sorted(self.builds)))]

    @precondition(lambda self: self.builds)
    @rule(data=st.data())
    def recreate_build(self, data: st.DataObject) -> None:
        """The same version, another build (as a version number reused would make it)."""
        version = data.draw(st.sampled_from(sorted(self.builds)))
        self.generation[version] = self.generation.get(version, 0) + 1
        self.builds[version] = dataclasses.replace(
            self.builds[version], fingerprint=f"sha256:{version:032x}{self.generation[version]:032x}"
        )

    @rule(hours=st.integers(min_value=1, max_value=48))
    def time_passes(self, hours: int) -> None:
        self.now += timedelta(hours=hours)

    # -- the prod channel's spec ----------------------------------------------------------

    @rule(version=st.integers(min_value=1, max_value=12))
    def pin(self, version: int) -> None:
        self.pinned = version

    @rule()
    def unpin(self) -> None:
        self.pinned = None

    @rule()
    def toggle_suspend(self) -> None:
        self.suspend = not self.suspend

    @rule(limit=st.integers(min_value=1, max_value=5))
    def set_history_limit(self, limit: int) -> None:
        self.history_limit = limit

    # -- planning after every step --------------------------------------------------------

    def _specs(self) -> dict[str, dict[str, Any]]:
        prod: dict[str, Any] = {
            "source": {"channel": "candidate", "minSoak": "24h"},
            "historyLimit": self.history_limit,
            "suspend": self.suspend,
        }
        if self.pinned is not None:
            prod["version"] = self.pinned
        return {"candidate": {"source": {"latestValidated": {}, "minSoak": "2h"}, "historyLimit": 3}, "prod": prod}

    def _observe(self, name: str) -> ChannelObservation:
        following = {
            "candidate": Following(None),
            "prod": Following("candidate", held=self.pinned is not None or self.suspend),
        }
        return ChannelObservation(
            now=self.now,
            builds=dict(self.builds),
            upstream=self.status["candidate"] if name == "prod" else None,
            following=following,
        )

    @invariant()
    def plan_both(self) -> None:
        specs = self._specs()
        for name in ("candidate", "prod"):
            self.before[name] = self.status[name].current
            result = plan(_channel(name, specs[name], self.status[name]), self._observe(name))
            self.last[name] = result
            self.status[name] = result.status
            self._check(name, specs[name], result)
            again = plan(_channel(name, specs[name], result.status), self._observe(name))
            assert not again.moved and not again.actions, (name, again.actions)
            assert again.status.current == result.status.current

    def _check(self, name: str, spec: dict[str, Any], result: ChannelPlan) -> None:
        status = result.status
        current = status.current
        limit = spec["historyLimit"]
        assert len(status.history) <= limit, (name, len(status.history), limit)
        if current is None:
            return
        build = self.builds.get(current.version)
        assert build is not None and build.name == current.build and build.fingerprint == current.fingerprint, (
            name,
            current,
        )
        assert verdict(current.version, build).usable, (name, current.version, verdict(current.version, build))
        before = self.before[name]
        if not result.moved or before is None or before.version == current.version:
            return
        if current.reason == "LatestValidated":
            assert build.validated_at is not None and self.now - build.validated_at >= CANDIDATE_SOAK
            if verdict(before.version, self.builds.get(before.version)).usable:
                assert current.version > before.version, "a policy moved back"
        if current.reason == "UpstreamChannel":
            upstream = self.status["candidate"].current
            assert upstream is not None and upstream.version == current.version
            assert self.now - upstream.promoted_at >= PROD_SOAK, "taken before the soak"
        if current.reason in ("Pinned", "Rollback"):
            assert spec.get("version") == current.version


TestChannelSequences = Channels.TestCase
TestChannelSequences.settings = generated.search(stateful_step_count=30)
