"""ImageChannel planner tables: the three policies, soak times, pins to good and bad versions,
revocation of the current entry and of history entries, vanished artifacts, suspension, history
trimming, and re-planning after a lost concurrent move."""

from __future__ import annotations

import dataclasses
import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from goldenimage.api.conditions import find
from goldenimage.api.imagechannel import ChannelArtifact, ChannelEntry, ImageChannelStatus
from goldenimage.api.resources import ImageChannel
from goldenimage.reconcile.imagechannel import (
    ChannelObservation,
    ChannelPlan,
    ChannelSettings,
    Following,
    plan,
    rollback_target,
)
from goldenimage.reconcile.usable import BuildView

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


def artifacts(version: int) -> tuple[ChannelArtifact, ...]:
    return (
        ChannelArtifact(target="aws-eu", cloud="aws", region="eu-west-1", id=f"ami-eu-{version}"),
        ChannelArtifact(target="aws-eu", cloud="aws", region="us-east-1", id=f"ami-us-{version}"),
    )


def good(version: int, validated_ago: timedelta = 48 * HOUR, **kw: Any) -> BuildView:
    return BuildView(
        name=f"web-base-{version}",
        version=version,
        fingerprint="sha256:" + f"{version:064x}",
        artifacts=artifacts(version),
        validated_at=NOW - validated_ago,
        state="Validated",
        **kw,
    )


def unvalidated(version: int, state: str = "ValidationFailed") -> BuildView:
    return BuildView(
        name=f"web-base-{version}",
        version=version,
        fingerprint="sha256:" + "0" * 64,
        artifacts=artifacts(version),
        state=state,
    )


def revoked(version: int, reason: str = "CVE-2026-1234") -> BuildView:
    return good(version, revoked=reason)


def entry(version: int, promoted_ago: timedelta = 24 * HOUR, reason: str = "LatestValidated") -> ChannelEntry:
    return ChannelEntry(
        version=version,
        build=f"web-base-{version}",
        fingerprint="sha256:" + f"{version:064x}",
        artifacts=list(artifacts(version)),
        promoted_at=NOW - promoted_ago,
        reason=reason,  # type: ignore[arg-type]
    )


def channel(
    spec: dict[str, Any],
    *,
    current: ChannelEntry | None = None,
    history: list[ChannelEntry] | None = None,
    name: str = "web-prod",
) -> ImageChannel:
    status = ImageChannelStatus(current=current, history=history or [])
    return ImageChannel.model_validate(
        {
            "metadata": {"name": name, "namespace": "platform", "generation": 2},
            "spec": {"image": "web-base", **spec},
            "status": status.model_dump(mode="json", by_alias=True, exclude_none=True),
        }
    )


LATEST = {"source": {"latestValidated": {}}}


def upstream_spec(soak: str = "24h") -> dict[str, Any]:
    return {"source": {"channel": "web-candidate", "minSoak": soak}}


def observe(
    *builds: BuildView,
    upstream: ChannelEntry | None = None,
    upstream_exists: bool = True,
    missing: set[tuple[str, str]] | None = None,
) -> ChannelObservation:
    gone = missing or set()
    return ChannelObservation(
        now=NOW,
        # Artifacts found missing are recorded on their build, where every channel reads them.
        builds={
            b.version: dataclasses.replace(b, missing=tuple(a for a in b.artifacts if (a.region, a.id) in gone))
            for b in builds
        },
        upstream=ImageChannelStatus(current=upstream) if upstream_exists else None,
        upstream_exists=upstream_exists,
    )


def version(result: ChannelPlan) -> int | None:
    return result.status.current.version if result.status.current else None


def ready(result: ChannelPlan) -> tuple[str, str, str]:
    found = find(result.status.conditions, "Ready")
    assert found is not None
    return found.status, found.reason, found.message


# -- latest validated ------------------------------------------------------------------------------


def test_empty_channel_takes_the_newest_validated_version() -> None:
    result = plan(channel(LATEST), observe(good(1), good(2), unvalidated(3, "Validating")))
    assert version(result) == 2
    assert result.status.current is not None and result.status.current.reason == "LatestValidated"
    assert [a.id for a in result.status.current.artifacts] == ["ami-eu-2", "ami-us-2"]
    assert result.status.current.promoted_at == NOW
    assert result.moved and result.status.history == []
    assert ready(result)[:2] == ("True", "Promoted")
    assert [a.reason for a in result.actions] == ["Promoted"]


def test_a_revoked_newest_version_is_skipped() -> None:
    assert version(plan(channel(LATEST), observe(good(1), good(2), revoked(3)))) == 2


def test_a_version_whose_artifacts_vanished_is_skipped() -> None:
    result = plan(channel(LATEST), observe(good(1), good(2), missing={("us-east-1", "ami-us-2")}))
    assert version(result) == 1


def test_a_failed_build_is_never_taken() -> None:
    result = plan(channel(LATEST), observe(unvalidated(1, "BuildFailed"), unvalidated(2)))
    assert version(result) is None
    assert ready(result)[:2] == ("False", "NoValidatedVersion")


def test_a_newer_validated_version_moves_the_channel_and_history_keeps_the_old_one() -> None:
    result = plan(channel(LATEST, current=entry(1)), observe(good(1), good(2)))
    assert version(result) == 2
    assert [e.version for e in result.status.history] == [1]


def test_the_same_version_again_moves_nothing() -> None:
    result = plan(channel(LATEST, current=entry(2)), observe(good(1), good(2)))
    assert not result.moved and result.actions == () and version(result) == 2


def test_policies_never_move_backwards() -> None:
    # Pinned to 3 earlier, then unpinned while 3 is still the newest usable: it stays on 3.
    result = plan(channel(LATEST, current=entry(3, reason="Pinned")), observe(good(1), good(2), good(3)))
    assert version(result) == 3 and not result.moved


def test_soak_on_latest_validated_waits_then_moves() -> None:
    spec = {"source": {"latestValidated": {}, "minSoak": "2h"}}
    waiting = plan(channel(spec, current=entry(1)), observe(good(1), good(2, validated_ago=timedelta(minutes=30))))
    assert version(waiting) == 1 and waiting.requeue_after == timedelta(minutes=90)
    assert "soaks until" in ready(waiting)[2]
    moved = plan(channel(spec, current=entry(1)), observe(good(1), good(2, validated_ago=2 * HOUR)))
    assert version(moved) == 2


def test_while_the_newest_soaks_an_older_ready_one_is_taken() -> None:
    spec = {"source": {"latestValidated": {}, "minSoak": "2h"}}
    result = plan(channel(spec, current=entry(1)), observe(good(1), good(2), good(3, validated_ago=HOUR)))
    assert version(result) == 2 and result.requeue_after == HOUR


# -- upstream channel ------------------------------------------------------------------------------


def test_follows_the_upstream_channel_after_its_soak() -> None:
    result = plan(
        channel(upstream_spec("24h"), current=entry(1)), observe(good(1), good(2), upstream=entry(2, 25 * HOUR))
    )
    assert version(result) == 2
    assert result.status.current is not None and result.status.current.reason == "UpstreamChannel"


def test_upstream_soak_not_met_waits_and_requeues() -> None:
    result = plan(
        channel(upstream_spec("24h"), current=entry(1)), observe(good(1), good(2), upstream=entry(2, 20 * HOUR))
    )
    assert version(result) == 1 and result.requeue_after == 4 * HOUR
    assert ready(result)[0] == "True"


def test_missing_upstream_channel_is_reported() -> None:
    result = plan(channel(upstream_spec()), observe(good(1), upstream_exists=False))
    assert ready(result)[:2] == ("False", "UpstreamNotFound")


def test_empty_upstream_channel_is_reported() -> None:
    result = plan(channel(upstream_spec()), observe(good(1), upstream=None))
    assert ready(result)[:2] == ("False", "UpstreamEmpty")


def following(chain: tuple[str, ...]) -> dict[str, Following]:
    """Each channel of `chain` following the next."""
    return {name: Following(upstream) for name, upstream in itertools.pairwise(chain)}


@pytest.mark.parametrize(
    "chain",
    [("web-candidate", "web-prod"), ("web-candidate", "web-qa", "web-candidate")],
    ids=["two-channels", "downstream-of-a-cycle"],
)
def test_channels_that_follow_one_another_in_a_cycle_say_so(chain: tuple[str, ...]) -> None:
    observed = dataclasses.replace(observe(good(1), upstream=None), following=following(chain))
    result = plan(channel(upstream_spec()), observed)
    status, reason, message = ready(result)
    assert (status, reason) == ("False", "UpstreamCycle")
    assert " -> ".join(("web-prod", *chain)) in message
    assert version(result) is None


def test_a_pinned_or_suspended_channel_breaks_the_loop() -> None:
    held = {"web-candidate": Following("web-prod", held=True)}
    observed = dataclasses.replace(observe(good(1), upstream=entry(1, 48 * HOUR)), following=held)
    assert ready(plan(channel(upstream_spec()), observed))[1] != "UpstreamCycle"


def test_a_long_chain_without_a_cycle_is_no_cycle() -> None:
    observed = dataclasses.replace(
        observe(good(1), upstream=entry(1, 48 * HOUR)), following=following(("web-candidate", "web-qa", "web-dev"))
    )
    assert ready(plan(channel(upstream_spec()), observed))[:2] == ("True", "Promoted")


def test_upstream_pointing_at_a_revoked_build_is_not_followed() -> None:
    result = plan(
        channel(upstream_spec(), current=entry(1)), observe(good(1), revoked(2), upstream=entry(2, 48 * HOUR))
    )
    assert version(result) == 1
    assert ready(result)[:2] == ("False", "UpstreamRevoked")


def test_upstream_pointing_at_an_unvalidated_build_is_not_followed() -> None:
    result = plan(channel(upstream_spec()), observe(unvalidated(2), upstream=entry(2, 48 * HOUR)))
    assert version(result) is None and ready(result)[1] == "UpstreamNotValidated"


def test_follows_the_upstream_back_after_the_soak() -> None:
    result = plan(
        channel(upstream_spec("1h"), current=entry(3)), observe(good(2), good(3), upstream=entry(2, 2 * HOUR))
    )
    assert version(result) == 2


# -- pins ------------------------------------------------------------------------------------------


def test_pin_to_a_validated_version() -> None:
    result = plan(channel({"version": 2}), observe(good(1), good(2), good(3)))
    assert version(result) == 2
    assert result.status.current is not None and result.status.current.reason == "Pinned"


def test_pin_to_an_older_version_is_a_rollback() -> None:
    result = plan(channel({**LATEST, "version": 1}, current=entry(2)), observe(good(1), good(2)))
    assert version(result) == 1
    assert result.status.current is not None and result.status.current.reason == "Rollback"
    assert [e.version for e in result.status.history] == [2]


@pytest.mark.parametrize(
    ("builds", "reason"),
    [
        ((good(1), unvalidated(2, "BuildFailed")), "PinnedNotValidated"),
        ((good(1), unvalidated(2, "Validating")), "PinnedNotValidated"),
        ((good(1), revoked(2)), "PinnedRevoked"),
        ((good(1),), "PinnedNotFound"),
    ],
)
def test_pin_to_an_unusable_version_keeps_the_pointer_and_says_why(builds: tuple[BuildView, ...], reason: str) -> None:
    result = plan(channel({"version": 2}, current=entry(1)), observe(*builds))
    assert version(result) == 1 and not result.moved
    status, got, message = ready(result)
    assert (status, got) == ("False", reason)
    assert "spec.version 2" in message


def test_pin_to_a_version_whose_artifacts_vanished() -> None:
    result = plan(
        channel({"version": 2}, current=entry(1)), observe(good(1), good(2), missing={("eu-west-1", "ami-eu-2")})
    )
    assert version(result) == 1 and ready(result)[1] == "PinnedArtifactsMissing"


def test_a_pin_overrides_the_policy() -> None:
    result = plan(channel({**LATEST, "version": 1}), observe(good(1), good(2)))
    assert version(result) == 1


def test_pin_equal_to_current_moves_nothing() -> None:
    result = plan(channel({"version": 2}, current=entry(2, reason="Pinned")), observe(good(2)))
    assert not result.moved and ready(result)[:2] == ("True", "Promoted")


# -- revocation and vanished artifacts --------------------------------------------------------------


def test_revoking_the_current_build_falls_back_to_the_newest_valid_history_entry() -> None:
    current = channel(LATEST, current=entry(3), history=[entry(2), entry(1)])
    result = plan(current, observe(good(1), good(2), revoked(3)))
    assert version(result) == 2
    assert result.status.current is not None and result.status.current.reason == "Revoked"
    assert "CVE-2026-1234" in result.status.current.message
    assert [e.version for e in result.status.history] == [3, 2, 1]


def test_revocation_skips_history_entries_that_are_revoked_too() -> None:
    current = channel(upstream_spec(), current=entry(3), history=[entry(2), entry(1)])
    result = plan(current, observe(good(1), revoked(2), revoked(3), upstream=entry(3)))
    assert version(result) == 1


def test_revoking_a_history_entry_moves_nothing() -> None:
    result = plan(channel(LATEST, current=entry(3), history=[entry(2)]), observe(good(3), revoked(2)))
    assert not result.moved and version(result) == 3


def test_nothing_usable_left_clears_the_pointer() -> None:
    result = plan(
        channel(upstream_spec(), current=entry(2), history=[entry(1)]),
        observe(revoked(1), revoked(2), upstream=entry(2)),
    )
    assert result.status.current is None
    assert [e.version for e in result.status.history] == [2, 1]
    assert [a.reason for a in result.actions] == ["NoUsableVersion"]
    assert ready(result)[0] == "False"


def test_vanished_artifacts_fall_back_too() -> None:
    result = plan(
        channel(upstream_spec(), current=entry(2), history=[entry(1)]),
        observe(good(1), good(2), upstream=entry(2), missing={("eu-west-1", "ami-eu-2")}),
    )
    assert version(result) == 1
    assert result.status.current is not None and result.status.current.reason == "ArtifactsMissing"


def test_a_deleted_build_falls_back() -> None:
    result = plan(channel(upstream_spec(), current=entry(2), history=[entry(1)]), observe(good(1), upstream=entry(1)))
    assert version(result) == 1
    assert result.status.current is not None and result.status.current.reason == "BuildMissing"


def test_a_build_recreated_under_the_same_version_is_not_the_entry_it_replaced() -> None:
    # Same version, another recipe: the channel held the old build, which is gone.
    recreated = dataclasses.replace(good(2), fingerprint="sha256:" + "f" * 64)
    result = plan(channel(upstream_spec(), current=entry(2), history=[entry(1)]), observe(good(1), recreated))
    assert version(result) == 1
    assert result.status.current is not None and result.status.current.reason == "BuildMissing"
    # A history entry of another build is not a fallback either.
    renamed = dataclasses.replace(good(1), name="api-1")
    result = plan(channel(upstream_spec(), current=entry(2), history=[entry(1)]), observe(renamed, revoked(2)))
    assert result.status.current is None


def test_a_pinned_version_revoked_falls_back_and_reports_the_pin() -> None:
    result = plan(
        channel({"version": 2}, current=entry(2, reason="Pinned"), history=[entry(1)]), observe(good(1), revoked(2))
    )
    assert version(result) == 1
    assert ready(result)[:2] == ("False", "PinnedRevoked")


def test_fallback_then_policy_in_one_pass() -> None:
    # The revoked newest goes; latestValidated then takes the newest usable, even if not in history.
    result = plan(channel(LATEST, current=entry(4), history=[entry(2)]), observe(good(2), good(3), revoked(4)))
    assert version(result) == 3
    assert [e.version for e in result.status.history] == [2, 4, 2]


# -- history, suspension, idempotence ---------------------------------------------------------------


def test_history_is_trimmed_to_the_limit_newest_first() -> None:
    history = [entry(v) for v in range(9, 0, -1)]
    result = plan(
        channel({**LATEST, "historyLimit": 3}, current=entry(10), history=history), observe(good(10), good(11))
    )
    assert version(result) == 11
    assert [e.version for e in result.status.history] == [10, 9, 8]


def test_a_lowered_history_limit_trims_without_a_move() -> None:
    history = [entry(v) for v in (2, 1)]
    result = plan(channel({**LATEST, "historyLimit": 1}, current=entry(3), history=history), observe(good(3)))
    assert not result.moved
    assert [e.version for e in result.status.history] == [2]


def test_suspended_channel_stays_put() -> None:
    result = plan(channel({**LATEST, "suspend": True}, current=entry(1)), observe(good(1), good(2)))
    assert version(result) == 1 and not result.moved
    assert "suspended" in ready(result)[2]


def test_suspension_does_not_keep_a_revoked_pointer() -> None:
    result = plan(
        channel({**LATEST, "suspend": True}, current=entry(2), history=[entry(1)]), observe(good(1), revoked(2))
    )
    assert version(result) == 1


def test_replanning_its_own_result_is_a_no_op() -> None:
    first = plan(channel(LATEST, current=entry(1)), observe(good(1), good(2)))
    again = plan(channel(LATEST).model_copy(update={"status": first.status}), observe(good(1), good(2)))
    assert not again.moved and again.actions == () and again.status == first.status


def test_losing_a_concurrent_move_then_replanning_records_it_once() -> None:
    """Two operators plan the same move from the same status; the API server accepts one write
    (conditional on resourceVersion) and the other re-plans from the winner's status."""
    stale = channel(LATEST, current=entry(1))
    winner = plan(stale, observe(good(1), good(2)))
    loser_replanned = plan(stale.model_copy(update={"status": winner.status}), observe(good(1), good(2)))
    assert not loser_replanned.moved
    assert [e.version for e in loser_replanned.status.history] == [1]


def test_a_concurrent_pin_wins_over_the_policy_in_the_replan() -> None:
    moved = plan(channel(LATEST, current=entry(1)), observe(good(1), good(2), good(3)))
    assert version(moved) == 3
    pinned = channel({**LATEST, "version": 2}).model_copy(update={"status": moved.status})
    result = plan(pinned, observe(good(1), good(2), good(3)))
    assert version(result) == 2 and result.status.current is not None and result.status.current.reason == "Rollback"


# -- rollback target -------------------------------------------------------------------------------


def test_rollback_target_is_the_newest_usable_earlier_entry() -> None:
    status = ImageChannelStatus(current=entry(3), history=[entry(3), entry(2), entry(1)])
    asked: list[int] = []

    def usable(version: int) -> bool:
        asked.append(version)
        return version in (1, 3)

    found = rollback_target(status, usable=usable)
    assert found is not None and found.version == 1
    assert asked == [2, 1]  # newest first, never the current version, nothing after the answer
    assert rollback_target(ImageChannelStatus(current=entry(1), history=[entry(1)]), usable=lambda v: v == 1) is None


# -- publication ----------------------------------------------------------------------------------


def published(result: ChannelPlan) -> tuple[str, str] | None:
    found = find(result.status.conditions, "Published")
    return (found.status, found.reason) if found is not None else None


@pytest.mark.parametrize(
    "publish",
    [{}, {"gcp": {"label": {"key": "channel", "value": "prod"}}}, {"azure": {"galleryLatest": True}}],
    ids=["empty", "gcp-for-an-aws-image", "azure-for-an-aws-image"],
)
def test_nothing_to_publish_claims_nothing(publish: dict[str, Any]) -> None:
    result = plan(channel({**LATEST, "publish": publish}, current=entry(1)), observe(good(1)))
    assert published(result) is None
    assert not [a for a in result.actions if type(a).__name__.startswith("Publish")]


def test_something_to_publish_is_written_then_reported() -> None:
    result = plan(
        channel({**LATEST, "publish": {"aws": {"tag": {"key": "channel", "value": "prod"}}}}, current=entry(1)),
        observe(good(1)),
    )
    assert published(result) == ("False", "Publishing")
    assert [type(a).__name__ for a in result.actions] == ["Publish"]


@pytest.mark.parametrize(
    ("parameter", "template", "refused"),
    [
        ("/team-b/web", "/{namespace}/", True),
        ("/platformer/web", "/{namespace}/", True),  # a name that begins like the namespace is another
        ("/golden/platform/web", "/{namespace}/", True),
        ("/platform/web", "/{namespace}/", False),
        ("/golden/platform/web", "/golden/{namespace}/", False),
        ("/team-b/web", None, False),  # no rule: any path
    ],
)
def test_the_platforms_parameter_prefix_refuses_a_path_before_any_cloud_call(
    parameter: str, template: str | None, refused: bool
) -> None:
    spec = {**LATEST, "publish": {"aws": {"ssmParameter": parameter}, "configMap": {"name": "web-prod"}}}
    settings = ChannelSettings(ssm_parameter_prefix=template)
    result = plan(channel(spec, current=entry(1)), observe(good(1)), settings)
    publications = [type(a).__name__ for a in result.actions if type(a).__name__.startswith("Publish")]
    if not refused:
        assert publications == ["Publish", "PublishConfigMap"]
        return
    assert publications == ["PublishConfigMap"]  # AWS is not called at all; the ConfigMap still is
    found = find(result.status.conditions, "Published")
    assert found is not None and (found.status, found.reason) == ("False", "PublishFailed")
    prefix = (template or "").replace("{namespace}", "platform")
    assert found.message == (
        f"aws: SSM parameter {parameter} is outside {prefix}, where namespace platform may publish: "
        f"choose a path beneath {prefix}"
    )
