"""Generated sequences for the ImageBuild planner: Jobs run, succeed with results of any shape
(artifacts in the target's regions or not, twice, or none), fail retryably or for good, vanish,
get stuck; time passes; the operator loses its status write; the build is revoked. The plan's
actions are carried out as the executor would, and after every step:

- a build is Validated only if every artifact it records was booted by a validation Job that
  reported success for exactly that target and region;
- every recorded artifact was reported by a build Job of its target, in one of its regions, one
  per region, and every region of a built target has one;
- attempts never exceed `maxAttempts`, and a target has at most one build Job at work;
- planning again with nothing changed creates nothing;
- the planner never raises.

`GOLDENIMAGE_EXAMPLES=10000` runs more examples than the default.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from goldenimage.api import labels, names
from goldenimage.api.conditions import is_true
from goldenimage.api.imagebuild import ImageBuildStatus
from goldenimage.api.labels import FINALIZER
from goldenimage.api.resources import ImageBuild
from goldenimage.api.result import CheckOutcome, ReportedArtifact, Result
from goldenimage.reconcile.actions import CreateJob, CreateValidationJob, DeleteJob
from goldenimage.reconcile.imagebuild import BuildObservation, BuildPlan, BuildSettings, plan
from goldenimage.reconcile.outcomes import JobOutcome
from support import generated

START = datetime(2026, 11, 21, tzinfo=UTC)
SETTINGS = BuildSettings(retry_base=timedelta(seconds=30), retry_cap=timedelta(minutes=5))
BUILD = "web-base-7"
MAX_ATTEMPTS = 3
REGIONS = {"aws-eu": ("eu-west-1", "us-east-1"), "aws-us": ("us-east-1",)}
ANY_REGION = st.sampled_from(["eu-west-1", "us-east-1", "ap-south-1", ""])


def _recipe() -> dict[str, Any]:
    return {
        "targets": [
            {
                "name": "aws-eu",
                "aws": {
                    "region": "eu-west-1",
                    "copyToRegions": ["us-east-1"],
                    "source": {"amiId": "ami-0123456789abcdef0"},
                },
            },
            {"name": "aws-us", "aws": {"region": "us-east-1", "source": {"amiId": "ami-0123456789abcdef0"}}},
        ],
        "provisioners": [{"shell": {"inline": ["true"]}}],
        "build": {"maxAttempts": MAX_ATTEMPTS},
        "validation": {"checks": [{"name": "ssh", "tcp": {"port": 22}}]},
    }


class Build(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.now = START
        self.status = ImageBuildStatus()
        self.revoked = False
        self.jobs: dict[str, JobOutcome] = {}
        self.reported: dict[str, set[tuple[str, str]]] = {t: set() for t in REGIONS}
        self.booted: set[tuple[str, str, str]] = set()  # (target, region, id) a validation Job passed
        self.counter = 0

    # -- Jobs ----------------------------------------------------------------------------

    def _active(self, role: str) -> list[str]:
        return sorted(n for n, j in self.jobs.items() if j.state == "Active" and j.role == role)

    @precondition(lambda self: self._active(labels.ROLE_BUILD))
    @rule(
        data=st.data(),
        artifacts=st.one_of(
            st.just("declared"),
            st.lists(st.tuples(ANY_REGION, st.sampled_from(["ami-1", "ami-2"])), max_size=3),
        ),
    )
    def build_succeeds(self, data: st.DataObject, artifacts: str | list[tuple[str, str]]) -> None:
        name = data.draw(st.sampled_from(self._active(labels.ROLE_BUILD)))
        job = self.jobs[name]
        if artifacts == "declared":
            self.counter += 1
            pairs = [(r, f"ami-{self.counter:017x}") for r in REGIONS[job.target]]
        else:
            assert isinstance(artifacts, list)
            pairs = artifacts
        self.reported[job.target] |= set(pairs)
        result = Result(ok=True, artifacts=[ReportedArtifact(region=r, id=i) for r, i in pairs], packer_version="1.6.6")
        self.jobs[name] = _finished(job, "Succeeded", result, self.now)

    @precondition(lambda self: self._active(labels.ROLE_BUILD) or self._active(labels.ROLE_VALIDATION))
    @rule(data=st.data(), error=st.sampled_from(["Retryable", "Permanent", None]))
    def job_fails(self, data: st.DataObject, error: str | None) -> None:
        name = data.draw(st.sampled_from(self._active(labels.ROLE_BUILD) + self._active(labels.ROLE_VALIDATION)))
        result = Result(ok=False, error_class=error, message="boom") if error else None
        self.jobs[name] = _finished(self.jobs[name], "Failed", result, self.now)

    @precondition(lambda self: self._active(labels.ROLE_VALIDATION))
    @rule(data=st.data(), passed=st.booleans())
    def validation_finishes(self, data: st.DataObject, passed: bool) -> None:
        name = data.draw(st.sampled_from(self._active(labels.ROLE_VALIDATION)))
        job = self.jobs[name]
        result = Result(
            kind="validate",
            ok=passed,
            checks=[CheckOutcome(name="ssh", passed=passed, message="")],
            message="booted" if passed else "no answer",
        )
        if passed:
            artifact = next(
                v.artifact for v in self.status.validation if (v.target, v.region) == (job.target, job.region)
            )
            self.booted.add((job.target, job.region, artifact))
        self.jobs[name] = _finished(job, "Succeeded" if passed else "Failed", result, self.now)

    @precondition(lambda self: self.jobs)
    @rule(data=st.data())
    def job_vanishes(self, data: st.DataObject) -> None:
        del self.jobs[data.draw(st.sampled_from(sorted(self.jobs)))]

    @precondition(lambda self: self._active(labels.ROLE_BUILD))
    @rule(data=st.data())
    def pod_is_stuck(self, data: st.DataObject) -> None:
        name = data.draw(st.sampled_from(self._active(labels.ROLE_BUILD)))
        job = self.jobs[name]
        self.jobs[name] = JobOutcome(**{**job.__dict__, "stuck": "CreateContainerConfigError"})

    @rule(minutes=st.integers(min_value=1, max_value=30))
    def time_passes(self, minutes: int) -> None:
        self.now += timedelta(minutes=minutes)

    @rule()
    def revoke(self) -> None:
        self.revoked = True

    # -- planning ------------------------------------------------------------------------

    def _build(self) -> ImageBuild:
        return ImageBuild.model_validate(
            {
                "metadata": {
                    "name": BUILD,
                    "namespace": "platform",
                    "uid": "u-7",
                    "generation": 1,
                    "finalizers": [FINALIZER],
                },
                "spec": {
                    "image": "web-base",
                    "version": 7,
                    "fingerprint": "sha256:" + "a" * 64,
                    "reason": "Initial",
                    "recipe": _recipe(),
                    **({"revoked": {"reason": "CVE-1"}} if self.revoked else {}),
                },
                "status": self.status.model_dump(mode="json", by_alias=True, exclude_none=True),
            }
        )

    def _observe(self) -> BuildObservation:
        return BuildObservation(now=self.now, inputs_exist=True, jobs=dict(self.jobs))

    @invariant()
    def plan_and_carry_out(self) -> None:
        result = plan(self._build(), self._observe(), SETTINGS)
        self._carry_out(result)
        self.status = result.status
        self._check()
        again = plan(self._build(), self._observe(), SETTINGS)
        created = [a for a in again.actions if isinstance(a, CreateJob | CreateValidationJob)]
        assert not created, created

    def _carry_out(self, result: BuildPlan) -> None:
        for action in result.actions:
            if isinstance(action, CreateJob):
                name = names.build_job(BUILD, action.target, action.attempt)
                assert name not in self.jobs, f"{name} created twice"
                self.jobs[name] = JobOutcome(
                    name=name, target=action.target, attempt=action.attempt, state="Active", started_at=self.now
                )
            elif isinstance(action, CreateValidationJob):
                name = names.validation_job(BUILD, action.target, action.region, action.attempt)
                assert name not in self.jobs, f"{name} created twice"
                self.jobs[name] = JobOutcome(
                    name=name,
                    target=action.target,
                    attempt=action.attempt,
                    state="Active",
                    role=labels.ROLE_VALIDATION,
                    region=action.region,
                    started_at=self.now,
                )
            elif isinstance(action, DeleteJob):
                self.jobs.pop(action.name, None)

    def _check(self) -> None:
        status = self.status
        for target in status.targets:
            assert 1 <= target.attempt <= MAX_ATTEMPTS, target
            active = [
                j
                for j in self.jobs.values()
                if j.role == labels.ROLE_BUILD and j.target == target.name and j.state == "Active"
            ]
            assert len(active) <= 1, active
            recorded = [(a.region, a.id) for a in target.artifacts]
            assert set(recorded) <= self.reported[target.name], (target.name, recorded)
            if target.phase == "Succeeded":
                regions = [r for r, _ in recorded]
                assert sorted(regions) == sorted(REGIONS[target.name]), (target.name, recorded)
        if is_true(status.conditions, "Validated"):
            for target in status.targets:
                for artifact in target.artifacts:
                    assert (target.name, artifact.region, artifact.id) in self.booted, (
                        f"Validated, but {artifact.id} ({target.name}, {artifact.region}) was never booted"
                    )


def _finished(job: JobOutcome, state: str, result: Result | None, now: datetime) -> JobOutcome:
    return JobOutcome(**{**job.__dict__, "state": state, "result": result, "finished_at": now})


TestBuildSequences = Build.TestCase
TestBuildSequences.settings = generated.search(stateful_step_count=30)
