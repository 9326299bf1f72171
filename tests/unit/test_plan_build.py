"""ImageBuild planner tables: inputs, Jobs per target, results, retries with backoff, permanent
errors, stuck Pods, blocked builds and the conditions that summarize them."""

from __future__ import annotations

import dataclasses
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from goldenimage.api import labels, names
from goldenimage.api.conditions import find
from goldenimage.api.imagebuild import Artifact as Recorded
from goldenimage.api.imagebuild import ImageBuildStatus, TargetStatus, ValidationResult
from goldenimage.api.labels import FINALIZER
from goldenimage.api.resources import ImageBuild
from goldenimage.api.result import CheckOutcome, ReportedArtifact, Result, encode
from goldenimage.clouds import registry
from goldenimage.clouds.gcp.kind import Gcp
from goldenimage.packer.inputs import digest
from goldenimage.reconcile.actions import (
    AddFinalizer,
    CreateInputs,
    CreateJob,
    CreateValidationJob,
    DeleteJob,
    DeprecateArtifacts,
    Emit,
    ReleasePods,
    SweepAttempt,
)
from goldenimage.reconcile.imagebuild import BuildObservation, BuildSettings, plan
from goldenimage.reconcile.outcomes import JobOutcome, observe_pods

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
SETTINGS = BuildSettings(retry_base=timedelta(seconds=30), retry_cap=timedelta(minutes=5))
PLAYBOOK = "- hosts: all\n"


def build(
    targets: int = 1,
    *,
    status: ImageBuildStatus | None = None,
    max_attempts: int = 3,
    extra: dict[str, Any] | None = None,
    revoked: str | None = None,
) -> ImageBuild:
    recipe: dict[str, Any] = {
        "targets": [
            {
                "name": "aws-eu",
                "aws": {
                    "region": "eu-west-1",
                    "copyToRegions": ["us-east-1"],
                    "source": {"amiId": "ami-0123456789abcdef0"},
                },
            },
            {
                "name": "gcp-eu",
                "gcp": {"project": "platform-images", "zone": "europe-west1-b", "source": {"family": "rhel-9"}},
            },
        ][:targets],
        "provisioners": [{"ansible": {"playbook": {"configMapRef": {"name": "web-baseline", "key": "baseline.yml"}}}}],
        "build": {"maxAttempts": max_attempts},
        **(extra or {}),
    }
    return ImageBuild.model_validate(
        {
            "metadata": {
                "name": "web-base-7",
                "namespace": "platform",
                "uid": "1a2b3c4d-0000",
                "generation": 1,
                "finalizers": [FINALIZER],
            },
            "spec": {
                "image": "web-base",
                "version": 7,
                "fingerprint": "sha256:" + "a" * 64,
                "reason": "Initial",
                "recipe": recipe,
                "inputs": {"web-baseline/baseline.yml": digest(PLAYBOOK)},
                **({"revoked": {"reason": revoked}} if revoked else {}),
            },
            "status": (status or ImageBuildStatus()).model_dump(mode="json", by_alias=True, exclude_none=True),
        }
    )


def observe(**kwargs: Any) -> BuildObservation:
    return BuildObservation(now=kwargs.pop("now", NOW), inputs_exist=kwargs.pop("inputs_exist", True), **kwargs)


def building(attempt: int = 1, name: str = "aws-eu", cloud: str = "aws") -> TargetStatus:
    return TargetStatus(
        name=name,
        cloud=cloud,
        phase="Building",
        attempt=attempt,
        job_name=names.build_job("web-base-7", name, attempt),
        started_at=NOW,
    )


def job(
    state: str, attempt: int = 1, target: str = "aws-eu", result: Result | None = None, **kw: Any
) -> dict[str, JobOutcome]:
    name = names.build_job("web-base-7", target, attempt)
    return {name: JobOutcome(name=name, target=target, attempt=attempt, state=state, result=result, **kw)}  # type: ignore[arg-type]


def ok(*pairs: tuple[str, str]) -> Result:
    return Result(ok=True, artifacts=[ReportedArtifact(region=r, id=i) for r, i in pairs], packer_version="1.6.6")


def failed(message: str, error_class: str = "Retryable") -> Result:
    return Result(ok=False, error_class=error_class, message=message)  # type: ignore[arg-type]


def validation_job(
    state: str, result: Result | None = None, region: str = "eu-west-1", **kw: Any
) -> dict[str, JobOutcome]:
    name = names.validation_job("web-base-7", "aws-eu", region, 1)
    outcome = JobOutcome(
        name=name,
        target="aws-eu",
        attempt=1,
        state=state,
        role=labels.ROLE_VALIDATION,
        region=region,
        result=result,
        **kw,
    )  # type: ignore[arg-type]
    return {name: outcome}


def validate_ok() -> Result:
    return Result(
        kind="validate",
        ok=True,
        checks=[CheckOutcome(name="tcp-22", passed=True, message="connected")],
        message="booted",
    )


def built(*regions: str) -> TargetStatus:
    artifacts = [Recorded(region=r, id=f"ami-{r}") for r in regions or ("eu-west-1",)]
    return TargetStatus(name="aws-eu", cloud="aws", phase="Succeeded", artifacts=artifacts)


def condition(status: ImageBuildStatus, type_: str = "Ready") -> tuple[str, str]:
    found = find(status.conditions, type_)
    assert found is not None
    return found.status, found.reason


def kinds(actions: tuple[object, ...]) -> list[object]:
    return [a for a in actions if not isinstance(a, Emit)]


def test_new_build_creates_its_inputs_and_one_job_per_target_at_once() -> None:
    result = plan(
        build(2), observe(inputs_exist=False, input_contents={"web-baseline/baseline.yml": PLAYBOOK}), SETTINGS
    )
    (inputs, first, second) = kinds(result.actions)
    assert isinstance(inputs, CreateInputs)
    assert set(inputs.data) == {"p0-playbook.yml", "aws-eu.pkr.hcl", "gcp-eu.pkr.hcl", "recipe.json"}
    assert inputs.data["p0-playbook.yml"] == PLAYBOOK
    assert (first, second) == (CreateJob("aws-eu", 1), CreateJob("gcp-eu", 1))
    assert [t.phase for t in result.status.targets] == ["Building", "Building"]
    assert condition(result.status) == ("False", "Building")
    assert condition(result.status, "Built") == ("False", "Building")


def test_inputs_changed_since_the_version_was_created_block_the_build() -> None:
    result = plan(
        build(), observe(inputs_exist=False, input_contents={"web-baseline/baseline.yml": "changed"}), SETTINGS
    )
    assert kinds(result.actions) == [SweepAttempt("aws-eu", 1)]
    assert condition(result.status) == ("False", "InputsChanged")
    # It can never be built: the target fails, so that retention may retire the version.
    assert result.status.targets[0].phase == "Failed"


def test_missing_input_blocks_the_build() -> None:
    result = plan(build(), observe(inputs_exist=False, input_contents={}), SETTINGS)
    assert kinds(result.actions) == [SweepAttempt("aws-eu", 1)]
    assert condition(result.status) == ("False", "MissingInput")


def test_missing_secret_blocks_new_jobs_but_says_which() -> None:
    result = plan(build(), observe(missing_secrets=["rhsm/token"]), SETTINGS)
    assert kinds(result.actions) == []
    ready = find(result.status.conditions, "Ready")
    assert ready is not None and ready.reason == "MissingSecret" and "rhsm/token" in ready.message


def test_missing_service_account_blocks_new_jobs_but_says_which() -> None:
    result = plan(build(), observe(missing_service_accounts=["packer-aws"]), SETTINGS)
    assert kinds(result.actions) == []
    ready = find(result.status.conditions, "Ready")
    assert ready is not None and ready.reason == "MissingServiceAccount" and "packer-aws" in ready.message


def test_running_job_is_adopted() -> None:
    result = plan(build(), observe(jobs=job("Active")), SETTINGS)
    assert kinds(result.actions) == []
    assert result.status.targets[0].phase == "Building"
    assert result.status.targets[0].job_name == names.build_job("web-base-7", "aws-eu", 1)


def test_an_adopted_job_keeps_its_own_start_time_when_the_status_lost_it() -> None:
    """The operator restarted between creating the Job and recording it: the attempt (and its
    validation) started when the Job did, not when the operator came back."""
    started = NOW - timedelta(minutes=7)
    result = plan(build(), observe(jobs=job("Active", started_at=started)), SETTINGS)
    assert result.status.targets[0].started_at == started
    status = ImageBuildStatus(targets=[built()])
    result = plan(build(status=status), observe(jobs=validation_job("Active", started_at=started)), SETTINGS)
    assert [v.started_at for v in result.status.validation] == [started]
    assert plan(build(), observe(jobs=job("Active")), SETTINGS).status.targets[0].started_at == NOW


def test_success_records_every_artifact_by_region() -> None:
    status = ImageBuildStatus(targets=[building()])
    outcome = job("Succeeded", result=ok(("eu-west-1", "ami-1"), ("us-east-1", "ami-2")), finished_at=NOW)
    result = plan(build(status=status), observe(jobs=outcome), SETTINGS)
    (target,) = result.status.targets
    assert target.phase == "Succeeded"
    assert [(a.region, a.id) for a in target.artifacts] == [("eu-west-1", "ami-1"), ("us-east-1", "ami-2")]
    assert target.packer_version == "1.6.6"
    assert condition(result.status, "Built") == ("True", "Built")
    assert any(isinstance(a, Emit) and a.reason == "TargetBuilt" for a in result.actions)
    # Each artifact is validated as soon as it is recorded.
    assert kinds(result.actions) == [
        CreateValidationJob("aws-eu", "eu-west-1", "ami-1"),
        CreateValidationJob("aws-eu", "us-east-1", "ami-2"),
    ]
    assert [(v.region, v.phase) for v in result.status.validation] == [
        ("eu-west-1", "Running"),
        ("us-east-1", "Running"),
    ]
    assert condition(result.status, "Validated") == ("False", "Validating")
    assert condition(result.status) == ("False", "Validating")


def test_artifacts_reported_outside_the_targets_regions_fail_it_for_good() -> None:
    """A result is a claim: an artifact in a region the target does not build in is refused."""
    status = ImageBuildStatus(targets=[building()])
    outcomes = job("Succeeded", result=ok(("eu-west-1", "ami-1"), ("ap-south-1", "ami-2"), ("", "ami-3")))
    result = plan(build(status=status), observe(jobs=outcomes), SETTINGS)
    (target,) = result.status.targets
    assert (target.phase, target.error_class, target.artifacts) == ("Failed", "Permanent", [])
    assert "ami-2 in ap-south-1, ami-3 in no region" in target.message
    assert SweepAttempt("aws-eu", 1) in result.actions


@pytest.mark.parametrize(
    ("reported", "said"),
    [
        ((), "no artifact in eu-west-1, us-east-1"),
        ((("eu-west-1", "ami-1"),), "no artifact in us-east-1"),
        (
            (("eu-west-1", "ami-1"), ("eu-west-1", "ami-2"), ("us-east-1", "ami-3")),
            "two artifacts in eu-west-1: ami-1 and ami-2",
        ),
    ],
    ids=["none", "a-region-without-one", "two-in-one-region"],
)
def test_a_result_must_account_for_every_region_once(reported: tuple[tuple[str, str], ...], said: str) -> None:
    """Validation boots one artifact per region: a second one there would pass unbooted, and a
    region without one has no image."""
    status = ImageBuildStatus(targets=[building()])
    result = plan(build(status=status), observe(jobs=job("Succeeded", result=ok(*reported))), SETTINGS)
    (target,) = result.status.targets
    assert (target.phase, target.error_class, target.artifacts) == ("Failed", "Permanent", [])
    assert said in target.message


def test_a_build_without_the_finalizer_gets_it() -> None:
    found = build()
    bare = found.model_copy(update={"metadata": found.metadata.model_copy(update={"finalizers": []})})
    assert AddFinalizer() in plan(bare, observe(), SETTINGS).actions
    assert AddFinalizer() not in plan(found, observe(), SETTINGS).actions


def test_retryable_failure_retries_as_a_new_attempt_after_backoff() -> None:
    status = ImageBuildStatus(targets=[building()])
    outcome = job("Failed", result=failed("Error querying AMI: InvalidAMIID.NotFound"), finished_at=NOW)
    result = plan(build(status=status), observe(jobs=outcome), SETTINGS)
    (target,) = result.status.targets
    assert (target.phase, target.attempt, target.next_attempt_at) == ("Pending", 2, NOW + timedelta(seconds=30))
    assert "InvalidAMIID.NotFound" in target.message
    # What the failed attempt left behind goes before the next one starts.
    assert kinds(result.actions) == [SweepAttempt("aws-eu", 1)]
    assert result.requeue_after == timedelta(seconds=30)
    assert condition(result.status) == ("False", "Building")


def test_the_next_attempt_waits_for_its_time_then_starts() -> None:
    pending = TargetStatus(
        name="aws-eu", cloud="aws", phase="Pending", attempt=2, next_attempt_at=NOW + timedelta(seconds=10)
    )
    early = plan(build(status=ImageBuildStatus(targets=[pending])), observe(), SETTINGS)
    assert kinds(early.actions) == [] and early.requeue_after == timedelta(seconds=10)
    due = plan(build(status=ImageBuildStatus(targets=[pending])), observe(now=NOW + timedelta(seconds=10)), SETTINGS)
    assert kinds(due.actions) == [CreateJob("aws-eu", 2)]
    assert due.status.targets[0].job_name == names.build_job("web-base-7", "aws-eu", 2)


@pytest.mark.parametrize(("attempt", "wait"), [(1, 30), (2, 60), (3, 120), (4, 240), (5, 300), (9, 300)])
def test_backoff_is_exponential_and_capped(attempt: int, wait: int) -> None:
    status = ImageBuildStatus(targets=[building(attempt)])
    result = plan(
        build(status=status, max_attempts=10),
        observe(jobs=job("Failed", attempt, result=failed("x"), finished_at=NOW)),
        SETTINGS,
    )
    assert result.status.targets[0].next_attempt_at == NOW + timedelta(seconds=wait)


def test_last_attempt_fails_the_target() -> None:
    status = ImageBuildStatus(targets=[building(3)])
    result = plan(
        build(status=status), observe(jobs=job("Failed", 3, result=failed("boom"), finished_at=NOW)), SETTINGS
    )
    (target,) = result.status.targets
    assert (target.phase, target.error_class) == ("Failed", "Retryable")
    assert condition(result.status) == ("False", "BuildFailed")
    ready = find(result.status.conditions, "Ready")
    assert ready is not None and "aws-eu: boom" in ready.message


def test_permanent_error_fails_at_once() -> None:
    status = ImageBuildStatus(targets=[building()])
    outcome = job("Failed", result=failed("invalid template: Unsupported block type", "Permanent"), finished_at=NOW)
    result = plan(build(status=status), observe(jobs=outcome), SETTINGS)
    (target,) = result.status.targets
    assert (target.phase, target.attempt, target.error_class) == ("Failed", 1, "Permanent")
    assert "Unsupported block type" in target.message
    assert kinds(result.actions) == [SweepAttempt("aws-eu", 1)]


def test_failure_without_a_result_is_retried_with_the_jobs_reason() -> None:
    status = ImageBuildStatus(targets=[building()])
    outcome = job("Failed", problem="the Job ran past its deadline (7200s) and was stopped", finished_at=NOW)
    result = plan(build(status=status), observe(jobs=outcome), SETTINGS)
    assert result.status.targets[0].attempt == 2
    assert "deadline" in result.status.targets[0].message


def test_success_without_a_result_is_not_taken_for_success() -> None:
    status = ImageBuildStatus(targets=[building()])
    result = plan(build(status=status), observe(jobs=job("Succeeded", problem="the Job left no result")), SETTINGS)
    assert result.status.targets[0].phase == "Pending"


def test_a_vanished_job_counts_as_a_failed_attempt() -> None:
    result = plan(build(status=ImageBuildStatus(targets=[building()])), observe(), SETTINGS)
    assert result.status.targets[0].attempt == 2
    assert "disappeared" in result.status.targets[0].message


def test_a_pod_that_cannot_start_fails_permanently_and_its_job_goes() -> None:
    status = ImageBuildStatus(targets=[building()])
    outcome = job("Active", stuck='CreateContainerConfigError: secret "rhsm" not found')
    result = plan(build(status=status), observe(jobs=outcome), SETTINGS)
    assert kinds(result.actions) == [DeleteJob(names.build_job("web-base-7", "aws-eu", 1)), SweepAttempt("aws-eu", 1)]
    assert result.status.targets[0].phase == "Failed"
    assert "secret" in result.status.targets[0].message


def test_recorded_artifacts_survive_another_targets_failure() -> None:
    done = TargetStatus(
        name="aws-eu", cloud="aws", phase="Succeeded", artifacts=[Recorded(region="eu-west-1", id="ami-1")]
    )
    status = ImageBuildStatus(targets=[done, building(3, "gcp-eu", "gcp")])
    result = plan(
        build(2, status=status), observe(jobs=job("Failed", 3, "gcp-eu", failed("quota"), finished_at=NOW)), SETTINGS
    )
    assert result.status.targets[0].artifacts == done.artifacts
    assert condition(result.status) == ("False", "BuildFailed")


def test_a_finished_build_plans_nothing_and_keeps_its_conditions_time() -> None:
    status = ImageBuildStatus(targets=[building()])
    outcomes = {
        **job("Succeeded", result=ok(("eu-west-1", "ami-1"), ("us-east-1", "ami-2"))),
        **validation_job("Succeeded", validate_ok()),
        **validation_job("Succeeded", validate_ok(), region="us-east-1"),
    }
    first = plan(build(status=status), observe(jobs=outcomes), SETTINGS)
    second = plan(build(status=first.status), observe(jobs=outcomes), SETTINGS)
    assert condition(second.status) == ("True", "Validated")
    later = plan(build(status=second.status), observe(now=NOW + timedelta(hours=1), jobs=outcomes), SETTINGS)
    assert kinds(later.actions) == [] and later.status == second.status


def test_succeeded_result_from_a_failed_job_is_still_recorded() -> None:
    """Artifacts exist once the runner says so: never drop them, whatever the Job ended as."""
    status = ImageBuildStatus(targets=[building()])
    outcome = job("Failed", result=ok(("eu-west-1", "ami-1"), ("us-east-1", "ami-2")), problem="DeadlineExceeded")
    result = plan(build(status=status), observe(jobs=outcome), SETTINGS)
    assert result.status.targets[0].phase == "Succeeded"


# -- validation ------------------------------------------------------------------------------------


def test_jobs_an_earlier_release_named_are_still_found_by_the_name_the_status_recorded() -> None:
    """Job names gained a hash; a build or validation running across the upgrade is still seen
    through the name its status recorded, and keeps that name."""
    old = "web-base-7-aws-eu-1"
    status = ImageBuildStatus(targets=[building().model_copy(update={"job_name": old})])
    reported = ok(("eu-west-1", "ami-1"), ("us-east-1", "ami-2"))
    outcome = JobOutcome(name=old, target="aws-eu", attempt=1, state="Succeeded", result=reported)
    done = plan(build(status=status), observe(jobs={old: outcome}), SETTINGS)
    assert done.status.targets[0].phase == "Succeeded"

    active = dataclasses.replace(outcome, state="Active", result=None)
    running = plan(build(status=status), observe(jobs={old: active}), SETTINGS)
    assert (running.status.targets[0].phase, running.status.targets[0].job_name) == ("Building", old)
    assert kinds(running.actions) == []


def test_a_job_is_the_result_of_what_its_labels_say_not_of_its_name() -> None:
    """A succeeded Job of the validation's name that says it is something else (another target,
    region, attempt or a build Job) never validates the artifact."""
    status = ImageBuildStatus(targets=[built()])
    running = plan(build(status=status), observe(), SETTINGS)
    (name,) = validation_job("Active")
    for other in ({"target": "aws-us"}, {"region": "us-east-1"}, {"attempt": 2}, {"role": labels.ROLE_BUILD}):
        impostor = JobOutcome(
            **{"name": name, "target": "aws-eu", "attempt": 1, "region": "eu-west-1", "state": "Succeeded"}
            | {"role": labels.ROLE_VALIDATION, "result": validate_ok()}
            | other  # type: ignore[arg-type]
        )
        done = plan(build(status=running.status), observe(jobs={name: impostor}), SETTINGS)
        (entry,) = done.status.validation
        assert entry.phase != "Passed", other
        assert condition(done.status, "Validated") != ("True", "Validated")


def test_validation_passes_then_the_build_is_ready() -> None:
    status = ImageBuildStatus(targets=[built()])
    running = plan(build(status=status), observe(jobs=validation_job("Active")), SETTINGS)
    assert [v.phase for v in running.status.validation] == ["Running"]
    assert kinds(running.actions) == []
    done = plan(build(status=running.status), observe(jobs=validation_job("Succeeded", validate_ok())), SETTINGS)
    (entry,) = done.status.validation
    assert (entry.phase, entry.artifact, entry.checks[0].name) == ("Passed", "ami-eu-west-1", "tcp-22")
    assert condition(done.status, "Validated") == ("True", "Validated")
    assert condition(done.status) == ("True", "Validated")


def test_at_most_eight_validations_of_a_build_run_at_once() -> None:
    regions = [f"eu-west-{i}" for i in range(1, 13)]
    first = plan(build(status=ImageBuildStatus(targets=[built(*regions)])), observe(), SETTINGS)
    started = [a.region for a in first.actions if isinstance(a, CreateValidationJob)]
    assert started == regions[:8]
    assert [v.phase for v in first.status.validation] == ["Running"] * 8 + ["Pending"] * 4
    # Two of them finish: two more start, never more than eight at a time.
    jobs = {
        **validation_job("Succeeded", validate_ok(), region="eu-west-1"),
        **validation_job("Succeeded", validate_ok(), region="eu-west-2"),
        **{k: v for r in regions[2:8] for k, v in validation_job("Active", region=r).items()},
    }
    second = plan(build(status=first.status), observe(jobs=jobs), SETTINGS)
    assert second.status.validation[0].phase == "Passed"
    assert sum(v.phase == "Running" for v in second.status.validation) <= 8
    assert [a.region for a in second.actions if isinstance(a, CreateValidationJob)] == []
    third = plan(build(status=second.status), observe(jobs=jobs), SETTINGS)
    assert [a.region for a in third.actions if isinstance(a, CreateValidationJob)] == regions[8:10]
    assert condition(third.status, "Validated") == ("False", "Validating")


def test_artifacts_gone_from_the_cloud_make_the_build_unavailable_until_they_are_back() -> None:
    status = ImageBuildStatus(targets=[built()])
    validated = plan(build(status=status), observe(jobs=validation_job("Succeeded", validate_ok())), SETTINGS)
    assert condition(validated.status, "Available") == ("True", "Present")
    gone = plan(build(status=validated.status), observe(missing=frozenset({("eu-west-1", "ami-eu-west-1")})), SETTINGS)
    assert [(m.target, m.region, m.id) for m in gone.status.missing_artifacts] == [
        ("aws-eu", "eu-west-1", "ami-eu-west-1")
    ]
    assert condition(gone.status, "Available") == ("False", "ArtifactsMissing")
    assert condition(gone.status) == ("False", "ArtifactsMissing")
    assert [e.reason for e in gone.actions if isinstance(e, Emit)] == ["ArtifactsMissing"]
    # Not checked in a pass: what the status says stands, and nothing is said twice.
    unchecked = plan(build(status=gone.status), observe(), SETTINGS)
    assert unchecked.status == gone.status and unchecked.actions == ()
    back = plan(build(status=gone.status), observe(missing=frozenset()), SETTINGS)
    assert back.status.missing_artifacts == [] and condition(back.status) == ("True", "Validated")


def test_a_failed_check_blocks_readiness_and_says_which() -> None:
    failed_check = Result(
        kind="validate",
        ok=False,
        message="failed: http-80",
        checks=[
            CheckOutcome(name="http-80", passed=False, message="GET http://127.0.5.4:80/health: connection refused")
        ],
    )
    status = ImageBuildStatus(targets=[built()])
    result = plan(build(status=status), observe(jobs=validation_job("Failed", failed_check)), SETTINGS)
    assert condition(result.status, "Validated") == ("False", "ValidationFailed")
    ready = find(result.status.conditions, "Ready")
    assert ready is not None and ready.reason == "ValidationFailed" and "connection refused" in ready.message
    assert any(isinstance(a, Emit) and a.reason == "ValidationFailed" for a in result.actions)


def test_validation_job_without_a_result_fails_validation() -> None:
    status = ImageBuildStatus(targets=[built()])
    result = plan(
        build(status=status), observe(jobs=validation_job("Failed", problem="the Job ran past its deadline")), SETTINGS
    )
    assert result.status.validation[0].phase == "Failed"
    assert "deadline" in result.status.validation[0].message


class _GcpWithoutValidator(Gcp):
    capabilities = replace(Gcp.capabilities, validate=False)


def test_clouds_without_a_validator_are_not_validated(monkeypatch: pytest.MonkeyPatch) -> None:
    # A kind whose capabilities lack validate stands in for a cloud added without a validator.
    monkeypatch.setitem(registry.KINDS, "gcp", _GcpWithoutValidator())
    gcp = TargetStatus(name="gcp-eu", cloud="gcp", phase="Succeeded", artifacts=[Recorded(region="global", id="img")])
    result = plan(build(2, status=ImageBuildStatus(targets=[built(), gcp])), observe(), SETTINGS)
    gcp_entry = next(v for v in result.status.validation if v.target == "gcp-eu")
    assert gcp_entry.phase == "Failed" and "no validator" in gcp_entry.message
    assert condition(result.status) == ("False", "ValidationFailed")


def test_not_built_means_validation_is_unknown() -> None:
    result = plan(build(status=ImageBuildStatus(targets=[building()])), observe(jobs=job("Active")), SETTINGS)
    assert condition(result.status, "Validated") == ("Unknown", "NotBuilt")


# -- revocation ------------------------------------------------------------------------------------


def test_revocation_deprecates_the_artifacts_once_and_blocks_readiness() -> None:
    status = ImageBuildStatus(targets=[built("eu-west-1", "us-east-1")])
    target = build(status=status, revoked="CVE-2026-1234")
    result = plan(target, observe(jobs=validation_job("Succeeded", validate_ok())), SETTINGS)
    deprecations = [a for a in result.actions if isinstance(a, DeprecateArtifacts)]
    assert deprecations == [
        DeprecateArtifacts(
            (("aws-eu", "eu-west-1", "ami-eu-west-1"), ("aws-eu", "us-east-1", "ami-us-east-1")), "CVE-2026-1234"
        )
    ]
    assert condition(result.status) == ("False", "Revoked")
    assert condition(result.status, "Deprecated") == ("True", "Revoked")
    again = plan(target.model_copy(update={"status": result.status}), observe(), SETTINGS)
    assert not [a for a in again.actions if isinstance(a, DeprecateArtifacts)]


def test_revoking_a_build_mid_way_stops_it_and_deprecates_what_was_built() -> None:
    done = built("eu-west-1")
    running = building(1, "gcp-eu", "gcp")
    status = ImageBuildStatus(targets=[done, running])
    result = plan(build(2, status=status, revoked="CVE-2026-1234"), observe(jobs=job("Active", 1, "gcp-eu")), SETTINGS)
    actions = kinds(result.actions)
    assert DeleteJob(names.build_job("web-base-7", "gcp-eu", 1)) in actions
    assert [t.phase for t in result.status.targets] == ["Succeeded", "Failed"]
    assert result.status.targets[1].message == "revoked before it was built"
    assert DeprecateArtifacts((("aws-eu", "eu-west-1", "ami-eu-west-1"),), "CVE-2026-1234") in actions
    # The artifact built before the revocation is not validated: its validation fails.
    assert [(v.target, v.region, v.phase) for v in result.status.validation] == [("aws-eu", "eu-west-1", "Failed")]


# -- the result finalizer: Pods are let go once the status records what they reported ---------


def released(actions: tuple[object, ...]) -> list[tuple[str, ...]]:
    return [a.pods for a in actions if isinstance(a, ReleasePods)]


def test_a_pod_is_let_go_after_the_status_recorded_its_result_and_only_once() -> None:
    pod = names.build_job("web-base-7", "aws-eu", 1) + "-x7k2p"
    outcome = job("Succeeded", result=ok(("eu-west-1", "ami-1"), ("us-east-1", "ami-2")), held=(pod,))
    result = plan(build(status=ImageBuildStatus(targets=[building()])), observe(jobs=outcome), SETTINGS)
    assert result.status.targets[0].phase == "Succeeded"
    assert released(result.actions) == [(pod,)]
    # Carried out only once the status that records the artifacts is written.
    assert ReleasePods.after_status is True
    # Once let go (the Pod no longer held), nothing more to release.
    (name,) = outcome
    again = {name: replace(outcome[name], held=())}
    assert released(plan(build(status=result.status), observe(jobs=again), SETTINGS).actions) == []


def test_a_running_pod_is_held_and_a_failed_attempt_is_let_go_as_it_is_retried() -> None:
    status = ImageBuildStatus(targets=[building()])
    running = plan(build(status=status), observe(jobs=job("Active", held=("p1",))), SETTINGS)
    assert released(running.actions) == []
    failed_ = plan(build(status=status), observe(jobs=job("Failed", result=failed("boom"), held=("p1",))), SETTINGS)
    assert failed_.status.targets[0].attempt == 2
    assert released(failed_.actions) == [("p1",)]


def test_pods_of_attempts_no_longer_wanted_are_let_go() -> None:
    # An earlier attempt, whose outcome the status moved past.
    status = ImageBuildStatus(targets=[building(2)])
    outcomes = {**job("Active", 2, held=("p2",)), **job("Failed", 1, held=("p1",))}
    assert released(plan(build(status=status), observe(jobs=outcomes), SETTINGS).actions) == [("p1",)]
    # A revoked build: its running Job is deleted and its Pod let go.
    revoked = plan(build(status=status, revoked="CVE-1"), observe(jobs=job("Active", 2, held=("p2",))), SETTINGS)
    assert released(revoked.actions) == [("p2",)]
    # Pods left by an earlier build of the name are let go, never read.
    stray = plan(build(status=status), observe(jobs=job("Active", 2), stray_pods=("old",)), SETTINGS)
    assert released(stray.actions) == [("old",)]


def test_a_validation_pod_is_held_until_its_result_is_recorded() -> None:
    status = ImageBuildStatus(targets=[built()])
    running = plan(build(status=status), observe(jobs=validation_job("Active", held=("v",))), SETTINGS)
    assert released(running.actions) == []
    done = plan(
        build(status=running.status), observe(jobs=validation_job("Succeeded", validate_ok(), held=("v",))), SETTINGS
    )
    assert [v.phase for v in done.status.validation] == ["Passed"]
    assert released(done.actions) == [("v",)]


def pod_of_a_gone_job(phase: str, result: Result | None, *, region: str = "") -> dict[str, Any]:
    """A Pod whose Job the TTL controller or a user deleted: kept by the result finalizer,
    marked for deletion, with the labels the Job's template gave it."""
    role = labels.ROLE_VALIDATION if region else labels.ROLE_BUILD
    pod_labels = {
        **labels.for_job("web-base", "web-base-7", 7, "aws-eu", 1, role),
        labels.BUILD_UID: "1a2b3c4d-0000",
        **({labels.REGION: region} if region else {}),
    }
    terminated: dict[str, Any] = {"exitCode": 0 if phase == "Succeeded" else 1, "finishedAt": "2026-11-21T11:58:00Z"}
    if result is not None:
        terminated["message"] = encode(result)
    return {
        "metadata": {
            "name": "web-base-7-pod",
            "labels": pod_labels,
            "finalizers": [labels.RESULT_FINALIZER],
            "deletionTimestamp": "2026-11-21T11:59:00Z",
            "creationTimestamp": "2026-11-21T11:00:00Z",
        },
        "status": {"phase": phase, "containerStatuses": [{"name": "runner", "state": {"terminated": terminated}}]},
    }


def test_the_pod_of_a_gone_job_stands_in_for_it_no_retry() -> None:
    status = ImageBuildStatus(targets=[building()])
    pod = pod_of_a_gone_job("Succeeded", ok(("eu-west-1", "ami-1"), ("us-east-1", "ami-2")))
    outcome = observe_pods([pod])
    assert outcome.name == names.build_job("web-base-7", "aws-eu", 1)  # named as its Job was
    result = plan(build(status=status), observe(jobs={outcome.name: outcome}), SETTINGS)
    (target,) = result.status.targets
    assert (target.phase, target.attempt) == ("Succeeded", 1)
    assert [(a.region, a.id) for a in target.artifacts] == [("eu-west-1", "ami-1"), ("us-east-1", "ami-2")]
    assert target.finished_at == datetime(2026, 11, 21, 11, 58, tzinfo=UTC)
    assert not any(isinstance(a, (CreateJob, SweepAttempt)) for a in result.actions)
    assert released(result.actions) == [("web-base-7-pod",)]
    # Without the Pod, the same status would have burnt the attempt.
    assert plan(build(status=status), observe(), SETTINGS).status.targets[0].attempt == 2


def test_the_pod_of_a_gone_validation_job_records_the_validation() -> None:
    status = ImageBuildStatus(
        targets=[built()],
        validation=[
            ValidationResult(
                target="aws-eu",
                region="eu-west-1",
                artifact="ami-eu-west-1",
                phase="Running",
                job_name=names.validation_job("web-base-7", "aws-eu", "eu-west-1", 1),
            )
        ],
    )
    outcome = observe_pods([pod_of_a_gone_job("Succeeded", validate_ok(), region="eu-west-1")])
    result = plan(build(status=status), observe(jobs={outcome.name: outcome}), SETTINGS)
    assert [v.phase for v in result.status.validation] == ["Passed"]
    assert released(result.actions) == [("web-base-7-pod",)]


def test_a_pod_still_stopping_after_its_job_went_is_waited_for() -> None:
    pod = pod_of_a_gone_job("Running", None)
    pod["status"]["containerStatuses"] = [{"name": "runner", "state": {"running": {}}}]
    outcome = observe_pods([pod])
    assert outcome.state == "Active"
    result = plan(build(status=ImageBuildStatus(targets=[building()])), observe(jobs={outcome.name: outcome}), SETTINGS)
    assert (result.status.targets[0].phase, result.status.targets[0].attempt) == ("Building", 1)
    assert released(result.actions) == []
