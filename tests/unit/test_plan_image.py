"""GoldenImage planner tables: when a new version is created and why, and when not."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import yaml

from goldenimage.api.conditions import Condition, find
from goldenimage.api.goldenimage import GoldenImageStatus
from goldenimage.api.resources import GoldenImage
from goldenimage.packer.fingerprint import fingerprint, image_recipe
from goldenimage.reconcile.actions import AnnotateBuild, CreateBuild, DeleteBuild, Emit, RevokeBuild
from goldenimage.reconcile.goldenimage import BuildSummary, ImageObservation, plan

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
RUNNER = "ghcr.io/goldenimage/packer-runner:0.1.0"
SPEC = """
targets: [{name: aws-eu, aws: {region: eu-west-1, source: {amiFilter: {name: "RHEL-9*", owners: ["309956199498"]}}}}]
provisioners: [{ansible: {playbook: {configMapRef: {name: web-baseline, key: baseline.yml}}}}]
"""
INPUTS = {"web-baseline/baseline.yml": "sha256:" + "1" * 64}
SOURCES = {"aws-eu": "ami-0a1b2c3d4e5f60718"}


def image(
    spec: str = SPEC, *, annotations: dict[str, str] | None = None, status: GoldenImageStatus | None = None
) -> GoldenImage:
    return GoldenImage.model_validate(
        {
            "metadata": {
                "name": "web-base",
                "namespace": "platform",
                "uid": "u-1",
                "generation": 3,
                "annotations": annotations or {},
            },
            "spec": yaml.safe_load(spec),
            "status": (status or GoldenImageStatus()).model_dump(mode="json", by_alias=True, exclude_none=True),
        }
    )


def summary(
    version: int,
    spec: str = SPEC,
    *,
    sources: dict[str, str] = SOURCES,
    inputs: dict[str, str] = INPUTS,
    runner: str = RUNNER,
    created: datetime = NOW - timedelta(days=1),
    **kw: Any,
) -> BuildSummary:
    recipe = image(spec).spec
    return BuildSummary(
        name=f"web-base-{version}",
        version=version,
        fingerprint=fingerprint(recipe, sources=sources, inputs=inputs, runner=runner),
        created=created,
        recipe=image_recipe(recipe),
        sources=sources,
        inputs=inputs,
        **kw,
    )


def observe(*builds: BuildSummary, **kw: Any) -> ImageObservation:
    return ImageObservation(
        now=kw.pop("now", NOW),
        runner=kw.pop("runner", RUNNER),
        builds=builds,
        sources=kw.pop("sources", SOURCES),
        inputs=kw.pop("inputs", INPUTS),
        **kw,
    )


def created(result: Any) -> CreateBuild | None:
    return next((a for a in result.actions if isinstance(a, CreateBuild)), None)


def ready(result: Any) -> Condition:
    found = find(result.status.conditions, "Ready")
    assert found is not None
    return found


def test_first_version() -> None:
    result = plan(image(), observe())
    build = created(result)
    assert build is not None and build.name == "web-base-1"
    assert (build.spec.version, build.spec.reason) == (1, "Initial")
    assert build.spec.sources == SOURCES and build.spec.inputs == INPUTS
    assert build.annotations == {"goldenimage.io/deletion-policy": "Retain"}
    assert result.status.latest_version == 1 and result.status.latest_build == "web-base-1"
    assert (ready(result).status, ready(result).reason) == ("False", "Building")
    assert result.status.observed_generation == 3


def test_the_same_spec_again_creates_nothing() -> None:
    result = plan(image(), observe(summary(1)))
    assert created(result) is None
    assert result.status.latest_version == 1


def test_a_changed_spec_creates_the_next_version() -> None:
    changed = SPEC + "tags: {Role: web}\n"
    build = created(plan(image(changed), observe(summary(1), summary(2))))
    assert build is not None and (build.spec.version, build.spec.reason) == (3, "SpecChanged")


def test_fields_that_do_not_shape_the_image_create_nothing() -> None:
    assert (
        created(plan(image(SPEC + "retention: {keepVersions: 3}\nbuild: {maxAttempts: 5}\n"), observe(summary(1))))
        is None
    )


def test_a_changed_playbook_is_a_spec_change() -> None:
    build = created(plan(image(), observe(summary(1), inputs={"web-baseline/baseline.yml": "sha256:" + "2" * 64})))
    assert build is not None and build.spec.reason == "SpecChanged"


def test_a_new_source_image_rebuilds() -> None:
    build = created(plan(image(), observe(summary(1), sources={"aws-eu": "ami-0ffffffffffffffff"})))
    assert build is not None and build.spec.reason == "SourceChanged"
    assert build.spec.sources == {"aws-eu": "ami-0ffffffffffffffff"}


def test_without_on_source_change_the_built_source_is_kept() -> None:
    spec = SPEC + "rebuild: {onSourceChange: false}\n"
    result = plan(image(spec), observe(summary(1, spec), sources={"aws-eu": "ami-0ffffffffffffffff"}))
    assert created(result) is None
    assert result.status.sources == SOURCES


def test_a_new_runner_rebuilds() -> None:
    build = created(plan(image(), observe(summary(1), runner="ghcr.io/goldenimage/packer-runner:0.2.0")))
    assert build is not None and build.spec.reason == "RunnerChanged"


def test_rebuild_token_creates_one_version_per_new_token() -> None:
    result = plan(image(annotations={"goldenimage.io/rebuild": "t1"}), observe(summary(1)))
    build = created(result)
    assert build is not None and build.spec.reason == "RebuildRequested"
    assert build.annotations["goldenimage.io/rebuild-token"] == "t1"
    first = plan(image(annotations={"goldenimage.io/rebuild": "t1"}), observe(summary(1)))
    assert first.status.handled_rebuild_token == "t1"
    handled = summary(2, annotations={"goldenimage.io/rebuild-token": "t1"})
    assert created(plan(image(annotations={"goldenimage.io/rebuild": "t1"}), observe(summary(1), handled))) is None
    again = created(plan(image(annotations={"goldenimage.io/rebuild": "t2"}), observe(summary(1), handled)))
    assert again is not None and again.spec.version == 3


def test_a_change_waits_for_the_version_at_work_then_builds_once() -> None:
    changed = SPEC + "tags: {Role: web}\n"
    busy = summary(1, finished=False)
    waiting = plan(image(changed), observe(busy))
    assert created(waiting) is None
    assert (ready(waiting).reason, ready(waiting).message) == (
        "Building",
        "version 1 is still at work; a new version (SpecChanged) starts after it",
    )
    build = created(plan(image(changed), observe(summary(1))))
    assert build is not None and (build.spec.version, build.spec.reason) == (2, "SpecChanged")


def test_a_blocked_or_revoked_version_does_not_hold_up_the_next() -> None:
    changed = SPEC + "tags: {Role: web}\n"
    blocked = Condition(type="Ready", status="False", reason="MissingSecret", message="", last_transition_time=NOW)
    for stuck in (summary(1, finished=False, ready=blocked), summary(1, finished=False, revoked=True)):
        build = created(plan(image(changed), observe(stuck)))
        assert build is not None and build.spec.version == 2


def test_versions_never_repeat_even_after_builds_are_deleted() -> None:
    status = GoldenImageStatus(latest_version=9)
    build = created(plan(image(SPEC + "tags: {a: b}\n", status=status), observe(summary(4))))
    assert build is not None and build.spec.version == 10
    # The newest build deleted with nothing new to build: the number stays, and the next is after it.
    same = plan(image(status=status), observe(summary(4)))
    assert created(same) is None
    assert (same.status.latest_version, same.status.latest_build) == (9, "web-base-4")


def test_missing_config_map_blocks_and_says_which() -> None:
    result = plan(image(), observe(missing_inputs=["web-baseline/baseline.yml"]))
    assert created(result) is None
    assert (ready(result).reason, "web-baseline/baseline.yml" in ready(result).message) == ("MissingConfigMap", True)


def test_unknown_source_blocks() -> None:
    result = plan(image(), observe(sources={}, source_errors={"aws-eu": "no AMI matches"}))
    assert created(result) is None
    assert ready(result).reason == "SourceNotFound" and "aws-eu: no AMI matches" in ready(result).message


def test_unreadable_credentials_block_and_say_which_secret() -> None:
    message = "the aws credentials Secret ns/aws-keys does not exist"
    result = plan(image(), observe(sources={}, credential_errors={"aws": message}))
    assert created(result) is None
    assert (ready(result).reason, ready(result).message) == ("MissingCredentials", message)


def test_ready_follows_the_latest_build() -> None:
    built = Condition(type="Ready", status="True", reason="Built", message="2 artifacts", last_transition_time=NOW)
    result = plan(image(), observe(summary(1, ready=built)))
    assert (ready(result).status, ready(result).reason) == ("True", "Built")
    assert "version 1" in ready(result).message


def test_schedule_and_max_age() -> None:
    spec = SPEC + 'rebuild: {schedule: "0 3 * * 0", maxAge: 30d}\n'
    # Latest built Friday 2026-11-20: the next Sunday 03:00 is 2026-11-22.
    latest = summary(1, spec, created=datetime(2026, 11, 20, 9, 0, tzinfo=UTC))
    waiting = plan(image(spec), observe(latest))
    assert created(waiting) is None
    assert waiting.status.next_rebuild_at == datetime(2026, 11, 22, 3, 0, tzinfo=UTC)
    assert waiting.requeue_after == datetime(2026, 11, 22, 3, 0, tzinfo=UTC) - NOW
    due = created(plan(image(spec), observe(latest, now=datetime(2026, 11, 22, 3, 0, tzinfo=UTC))))
    assert due is not None and due.spec.reason == "Scheduled"
    aged = SPEC + "rebuild: {maxAge: 7d}\n"
    old = summary(1, aged, created=NOW - timedelta(days=8))
    build = created(plan(image(aged), observe(old)))
    assert build is not None and build.spec.reason == "MaxAge"


def test_deletion_policy_is_kept_in_step_on_every_build() -> None:
    spec = SPEC + "retention: {deletionPolicy: Delete}\n"
    stale = summary(1, annotations={"goldenimage.io/deletion-policy": "Retain"})
    current = summary(2, annotations={"goldenimage.io/deletion-policy": "Delete"})
    actions = plan(image(spec), observe(stale, current)).actions
    assert [a for a in actions if isinstance(a, AnnotateBuild)] == [
        AnnotateBuild("web-base-1", {"goldenimage.io/deletion-policy": "Delete"})
    ]


def deleted(result: Any) -> list[str]:
    return [a.name for a in result.actions if isinstance(a, DeleteBuild)]


def test_retention_keeps_the_newest_versions_and_everything_a_channel_references() -> None:
    spec = SPEC + "retention: {keepVersions: 2}\n"
    builds = [summary(v, spec, validated=v < 4) for v in range(1, 6)]
    result = plan(image(spec), observe(*builds, referenced=frozenset({"web-base-1"})))
    # 5 and 4 are the newest two; 3 is the newest validated (4 and 5 are not); 1 is referenced.
    assert deleted(result) == ["web-base-2"]
    assert created(result) is None


def test_retention_never_deletes_unfinished_or_already_deleting_builds() -> None:
    spec = SPEC + "retention: {keepVersions: 1}\n"
    builds = [summary(1, spec, finished=False), summary(2, spec, deleting=True), summary(3, spec, validated=True)]
    assert deleted(plan(image(spec), observe(*builds))) == []


def test_a_token_present_from_the_start_is_answered_by_the_first_version() -> None:
    first = created(plan(image(annotations={"goldenimage.io/rebuild": "t1"}), observe()))
    assert first is not None and first.spec.reason == "Initial"
    assert first.annotations["goldenimage.io/rebuild-token"] == "t1"
    answered = summary(1, annotations={"goldenimage.io/rebuild-token": "t1"})
    assert created(plan(image(annotations={"goldenimage.io/rebuild": "t1"}), observe(answered))) is None


def test_a_handled_token_does_not_fire_again_after_its_build_is_retired() -> None:
    status = GoldenImageStatus(latest_version=6, handled_rebuild_token="t1")
    assert (
        created(plan(image(annotations={"goldenimage.io/rebuild": "t1"}, status=status), observe(summary(6)))) is None
    )


def test_a_token_set_again_while_its_build_exists_is_recorded_before_that_build_is_retired() -> None:
    # t2 was answered by version 2 long ago; t1 came after. Set back to t2, it is answered by
    # version 2 still present, and stays answered once retention removes version 2.
    answered = summary(2, annotations={"goldenimage.io/rebuild-token": "t2"})
    status = GoldenImageStatus(latest_version=3, handled_rebuild_token="t1")
    back = plan(image(annotations={"goldenimage.io/rebuild": "t2"}, status=status), observe(answered, summary(3)))
    assert created(back) is None and back.status.handled_rebuild_token == "t2"
    later = image(annotations={"goldenimage.io/rebuild": "t2"}, status=back.status)
    assert created(plan(later, observe(summary(3)))) is None


def test_a_token_too_long_for_the_status_is_recorded_by_its_digest() -> None:
    long = "t" * 5000
    first = plan(image(annotations={"goldenimage.io/rebuild": long}), observe(summary(1)))
    build = created(first)
    assert build is not None and build.spec.reason == "RebuildRequested"
    recorded = build.annotations["goldenimage.io/rebuild-token"]
    assert recorded.startswith("sha256:") and first.status.handled_rebuild_token == recorded
    # The status with it is one the API server stores, and the token asks no second time.
    GoldenImageStatus.model_validate(first.status.model_dump(mode="json", by_alias=True))
    answered = summary(2, annotations={"goldenimage.io/rebuild-token": recorded})
    again = image(annotations={"goldenimage.io/rebuild": long}, status=first.status)
    assert created(plan(again, observe(summary(1), answered))) is None
    other = image(annotations={"goldenimage.io/rebuild": long + "2"}, status=first.status)
    assert created(plan(other, observe(summary(1), answered))) is not None


def test_no_scheduled_rebuild_while_the_latest_build_is_at_work() -> None:
    aged = SPEC + "rebuild: {maxAge: 1h}\n"
    busy = summary(1, aged, created=NOW - timedelta(hours=3), finished=False)
    assert created(plan(image(aged), observe(busy))) is None


# -- revocations declared on the image ---------------------------------------------------------

REVOKING = SPEC + "revocations: [{version: 2, reason: CVE-2026-1234}]\n"


def revocations(result: Any) -> list[RevokeBuild]:
    return [a for a in result.actions if isinstance(a, RevokeBuild)]


def events(result: Any) -> list[tuple[str, str]]:
    return [(a.reason, a.message) for a in result.actions if isinstance(a, Emit)]


def revocations_condition(result: Any) -> Condition | None:
    return find(result.status.conditions, "Revocations")


def test_declared_revocations_are_not_part_of_the_fingerprint_and_build_nothing() -> None:
    declared = image(REVOKING).spec
    assert image_recipe(declared) == image_recipe(image().spec)
    assert fingerprint(declared, sources=SOURCES, inputs=INPUTS, runner=RUNNER) == summary(1).fingerprint
    result = plan(image(REVOKING), observe(summary(1), summary(2)))
    assert created(result) is None
    # ... and a version made for another reason freezes a recipe without them, so that revoking
    # later never looks like a change of the recipe.
    build = created(plan(image(REVOKING + "tags: {Role: web}\n"), observe(summary(1), summary(2))))
    assert build is not None and build.spec.version == 3 and build.spec.recipe.revocations == []
    assert build.spec.revoked is None


def test_a_declared_version_is_revoked_once_with_the_reason_and_who_declared_it() -> None:
    result = plan(image(REVOKING), observe(summary(1), summary(2, resource_version="41")))
    assert revocations(result) == [
        RevokeBuild("web-base-2", "CVE-2026-1234", "goldenimage/web-base", NOW, resource_version="41")
    ]
    assert events(result) == [("VersionRevoked", "version 2 revoked as spec.revocations declares: CVE-2026-1234")]
    condition = revocations_condition(result)
    assert condition is not None
    assert (condition.status, condition.reason, condition.message) == ("True", "Applied", "version 2 revoked")
    # Planned again once the build says it is revoked: nothing more to do or say.
    done = summary(2, revoked=True, revoked_by="goldenimage/web-base")
    again = plan(image(REVOKING, status=result.status), observe(summary(1), done))
    assert revocations(again) == [] and events(again) == [] and created(again) is None
    assert again.status == result.status


def test_a_build_revoked_already_by_someone_else_is_left_as_it_is() -> None:
    by_hand = summary(2, revoked=True, revoked_by="alice")
    result = plan(image(REVOKING), observe(summary(1), by_hand))
    assert revocations(result) == [] and events(result) == []
    condition = revocations_condition(result)
    assert condition is not None and (condition.status, condition.message) == ("True", "version 2 revoked")


def test_a_build_being_deleted_is_not_revoked() -> None:
    result = plan(image(REVOKING), observe(summary(1), summary(2, deleting=True)))
    assert revocations(result) == []
    condition = revocations_condition(result)
    assert condition is not None and condition.message == "version 2 is gone: nothing to revoke"


def test_a_version_not_built_yet_waits_and_is_created_revoked() -> None:
    spec = SPEC + "revocations: [{version: 3, reason: bad base image}, {version: 4, reason: bad base image}]\n"
    waiting = plan(image(spec), observe(summary(1), summary(2)))
    assert revocations(waiting) == [] and created(waiting) is None
    condition = revocations_condition(waiting)
    assert condition is not None
    assert condition.message == "versions 3, 4 are not built yet: revoked when created"
    # Version 3 comes (a rebuild was asked for): it is created revoked, never built.
    asked = image(spec, annotations={"goldenimage.io/rebuild": "t1"})
    result = plan(asked, observe(summary(1), summary(2)))
    build = created(result)
    assert build is not None and build.spec.version == 3
    assert build.spec.revoked is not None
    assert (build.spec.revoked.reason, build.spec.revoked.revoked_by) == ("bad base image", "goldenimage/web-base")
    assert build.spec.recipe.revocations == []
    assert revocations(result) == []
    condition = revocations_condition(result)
    assert condition is not None
    assert condition.message == "version 3 revoked; version 4 is not built yet: revoked when created"


def test_a_version_no_longer_declared_stays_revoked_and_says_so_once() -> None:
    revoked = summary(2, revoked=True, revoked_by="goldenimage/web-base")
    result = plan(image(), observe(summary(1), revoked))
    assert revocations(result) == [] and created(result) is None
    condition = revocations_condition(result)
    assert condition is not None and (condition.status, condition.reason) == ("False", "CannotWithdraw")
    assert condition.message.startswith("version 2 stays revoked although spec.revocations no longer lists it")
    assert "a revocation cannot be withdrawn" in condition.message
    assert events(result) == [("RevocationNotWithdrawn", condition.message)]
    # Said once, not at every resync.
    again = plan(image(status=result.status), observe(summary(1), revoked))
    assert events(again) == [] and revocations_condition(again) == condition
    # Revocations by anyone else are none of the image's business.
    by_hand = plan(image(), observe(summary(1), summary(2, revoked=True, revoked_by="alice")))
    assert revocations_condition(by_hand) is None and events(by_hand) == []


def test_the_condition_goes_when_there_is_nothing_to_say() -> None:
    result = plan(image(REVOKING), observe(summary(1), summary(2)))
    assert revocations_condition(result) is not None
    # The entry removed, and version 2 retired meanwhile: nothing declared, nothing kept.
    cleared = plan(image(status=result.status), observe(summary(1)))
    assert revocations_condition(cleared) is None
    assert find(cleared.status.conditions, "Ready") is not None
