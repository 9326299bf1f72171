"""Planning one ImageBuild: inputs, one Job per target and attempt, retries with backoff,
artifacts recorded as results arrive, and the Built and Ready conditions (pure)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from ..api.conditions import Condition, is_true, set_condition
from ..api.goldenimage import BuildPolicy, Target
from ..api.imagebuild import Artifact, CheckResult, ImageBuildStatus, TargetStatus, ValidationResult
from ..api.resources import ImageBuild
from ..kube import names
from ..kube.results import JobOutcome
from ..packer import inputs as packer_inputs
from ..packer.bundle import BundleTooLargeError, bundle
from ..packer.render import BuildContext, Settings
from . import backoff
from .actions import (
    Action,
    CreateInputs,
    CreateJob,
    CreateValidationJob,
    DeleteJob,
    DeprecateArtifacts,
    Emit,
    SweepAttempt,
)


@dataclass(frozen=True)
class BuildObservation:
    now: datetime
    inputs_exist: bool
    # The ConfigMap keys the recipe reads ("name/key" -> text), gathered only while the inputs
    # ConfigMap does not exist yet; a key that is gone is absent.
    input_contents: Mapping[str, str] | None = None
    # Secrets (or Secret keys) the build needs that do not exist, as "name" or "name/key".
    missing_secrets: Sequence[str] = ()
    # Without its ServiceAccount a Job's Pod is never created: the Job would wait for its deadline.
    missing_service_accounts: Sequence[str] = ()
    jobs: Mapping[str, JobOutcome] = field(default_factory=dict)


@dataclass(frozen=True)
class BuildSettings:
    retry_base: timedelta = timedelta(seconds=30)
    retry_cap: timedelta = timedelta(minutes=30)
    render: Settings = field(default_factory=Settings)
    # Clouds whose artifacts the runner can boot and check.
    validators: frozenset[str] = frozenset({"aws"})


@dataclass(frozen=True)
class BuildPlan:
    status: ImageBuildStatus
    actions: tuple[Action, ...]
    requeue_after: timedelta | None


def finished(build: ImageBuild) -> bool:
    """Nothing of the build is running or still to start: every target ended, and so did every
    artifact's validation (a revoked build validates nothing more)."""
    status = build.status
    if status is None or not status.targets or any(t.phase not in ("Succeeded", "Failed") for t in status.targets):
        return False
    if build.spec.revoked is not None:
        return True
    validated = {(v.target, v.region) for v in status.validation if v.phase in ("Passed", "Failed")}
    return {(t.name, a.region) for t in status.targets if t.phase == "Succeeded" for a in t.artifacts} <= validated


def context(build: ImageBuild) -> BuildContext:
    meta = build.metadata
    return BuildContext(
        namespace=meta.namespace or "",
        image=build.spec.image,
        build=meta.name,
        version=build.spec.version,
        build_id=names.build_id(meta.name, meta.uid or ""),
    )


def artifact_regions(target: Target, artifacts: Sequence[tuple[str, str]]) -> list[Artifact]:
    """Fill in the region where the cloud's id carries none."""
    default = "global" if target.gcp is not None else target.location
    return [Artifact(region=region or default, id=ident) for region, ident in artifacts]


def _inputs_problem(build: ImageBuild, contents: Mapping[str, str] | None) -> tuple[str, str] | None:
    """(reason, message) when the inputs cannot be copied as the build recorded them."""
    recorded = build.spec.inputs
    contents = contents or {}
    for ref, digest in sorted(recorded.items()):
        if ref not in contents:
            return "MissingInput", f"ConfigMap key {ref} is gone; the build cannot start without it"
        if packer_inputs.digest(contents[ref]) != digest:
            return (
                "InputsChanged",
                f"ConfigMap key {ref} changed after version {build.spec.version} was created; "
                "the GoldenImage builds a new version from the new content",
            )
    return None


# Reasons a build can never start; a missing Secret, by contrast, may still appear.
PERMANENT_BLOCKS = frozenset({"InputsChanged", "MissingInput", "InvalidInputs"})


class _Planner:
    def __init__(self, build: ImageBuild, observed: BuildObservation, settings: BuildSettings) -> None:
        self.build = build
        self.observed = observed
        self.settings = settings
        self.now = observed.now
        self.status = build.status or ImageBuildStatus()
        self.actions: list[Action] = []
        self.requeue: list[timedelta] = []
        self.blocked: tuple[str, str] | None = None

    def plan(self) -> BuildPlan:
        self._inputs()
        if self.blocked is None and self.observed.missing_secrets:
            names_ = ", ".join(self.observed.missing_secrets)
            self.blocked = ("MissingSecret", f"waiting for Secret {names_}: the build's Jobs need it")
        if self.blocked is None and self.observed.missing_service_accounts:
            names_ = ", ".join(self.observed.missing_service_accounts)
            self.blocked = ("MissingServiceAccount", f"waiting for ServiceAccount {names_}: the build's Jobs run as it")
        previous = {t.name: t for t in self.status.targets}
        targets = [self._target(t, previous.get(t.name)) for t in self.build.spec.recipe.targets]
        validation = self._validation(targets)
        self._revocation(targets)
        conditions = self._conditions(targets, validation)
        status = self.status.model_copy(
            update={
                "targets": targets,
                "validation": validation,
                "conditions": conditions,
                "observed_generation": self.build.metadata.generation,
            }
        )
        return BuildPlan(status, tuple(self.actions), min(self.requeue) if self.requeue else None)

    # -- inputs ----------------------------------------------------------------------------

    def _inputs(self) -> None:
        if self.observed.inputs_exist:
            return
        problem = _inputs_problem(self.build, self.observed.input_contents)
        if problem is not None:
            self.blocked = problem
            return
        try:
            data = bundle(
                self.build.spec.recipe,
                context(self.build),
                sources=self.build.spec.sources,
                contents=self.observed.input_contents or {},
                settings=self.settings.render,
            )
        except (BundleTooLargeError, packer_inputs.MissingInputError) as exc:
            self.blocked = ("InvalidInputs", str(exc))
            return
        self.actions.append(CreateInputs(data))

    # -- targets ---------------------------------------------------------------------------

    def _target(self, target: Target, current: TargetStatus | None) -> TargetStatus:
        status = current or TargetStatus(name=target.name, cloud=target.cloud, phase="Pending", attempt=1)
        if status.phase in ("Succeeded", "Failed"):
            return status
        job = names.build_job(self.build.metadata.name, target.name, status.attempt)
        outcome = self.observed.jobs.get(job)
        if self.build.spec.revoked is not None and not (outcome and outcome.result and outcome.result.ok):
            # A revoked version is not worth finishing.
            if outcome is not None and outcome.state == "Active":
                self.actions.append(DeleteJob(job))
            return self._failed(target, status, "Permanent", "revoked before it was built")
        if self.blocked is not None and self.blocked[0] in PERMANENT_BLOCKS:
            # The inputs this version recorded are gone or changed: it can never be built.
            return self._failed(target, status, "Permanent", self.blocked[1])
        if outcome is None:
            if status.phase == "Building":
                return self._failed(target, status, "Retryable", "the Job disappeared before it reported a result")
            if status.next_attempt_at is not None and self.now < status.next_attempt_at:
                self.requeue.append(status.next_attempt_at - self.now)
                return status
            if self.blocked is not None:
                return status
            self.actions.append(CreateJob(target.name, status.attempt))
            self.actions.append(
                Emit("Normal", "BuildStarted", f"target {target.name}: attempt {status.attempt} started as Job {job}")
            )
            return status.model_copy(
                update={"phase": "Building", "job_name": job, "started_at": self.now, "next_attempt_at": None}
            )
        status = status.model_copy(update={"phase": "Building", "job_name": job})
        if status.started_at is None:
            status = status.model_copy(update={"started_at": self.now})
        result = outcome.result
        if result is not None and result.ok and outcome.state != "Active":
            return self._succeeded(target, status, outcome)
        if outcome.state == "Active":
            if outcome.stuck:
                self.actions.append(DeleteJob(outcome.name))
                return self._failed(target, status, "Permanent", f"the build Pod cannot start: {outcome.stuck}")
            return status
        if outcome.state == "Succeeded":
            return self._failed(
                target, status, "Retryable", f"the Job succeeded but {outcome.problem or 'left no result'}"
            )
        error_class = result.error_class if result is not None and result.error_class else "Retryable"
        message = (result.message if result is not None and result.message else outcome.problem) or "the Job failed"
        return self._failed(target, status, error_class, message, outcome.finished_at)

    def _succeeded(self, target: Target, status: TargetStatus, outcome: JobOutcome) -> TargetStatus:
        assert outcome.result is not None
        artifacts = artifact_regions(target, [(a.region, a.id) for a in outcome.result.artifacts])
        where = ", ".join(f"{a.region}: {a.id}" for a in artifacts)
        self.actions.append(Emit("Normal", "TargetBuilt", f"target {target.name} built {where}"))
        return status.model_copy(
            update={
                "phase": "Succeeded",
                "artifacts": artifacts,
                "finished_at": outcome.finished_at or self.now,
                "packer_version": outcome.result.packer_version or None,
                "error_class": None,
                "message": f"built in {outcome.result.duration_seconds:.0f}s",
            }
        )

    def _failed(
        self,
        target: Target,
        status: TargetStatus,
        error_class: str,
        message: str,
        finished_at: datetime | None = None,
    ) -> TargetStatus:
        finished = finished_at or self.now
        self.actions.append(SweepAttempt(target.name, status.attempt))
        recipe = self.build.spec.recipe
        max_attempts = (recipe.build or BuildPolicy()).max_attempts
        attempt = status.attempt
        if error_class == "Permanent" or attempt >= max_attempts:
            why = "" if error_class == "Permanent" else f" (attempt {attempt} of {max_attempts})"
            self.actions.append(Emit("Warning", "TargetFailed", f"target {target.name} failed{why}: {message}"))
            return status.model_copy(
                update={
                    "phase": "Failed",
                    "finished_at": finished,
                    "error_class": "Permanent" if error_class == "Permanent" else "Retryable",
                    "message": message,
                    "next_attempt_at": None,
                }
            )
        wait = backoff.delay(attempt, base=self.settings.retry_base, cap=self.settings.retry_cap)
        retry_at = finished + wait
        self.requeue.append(max(timedelta(0), retry_at - self.now))
        self.actions.append(
            Emit(
                "Warning",
                "RetryScheduled",
                f"target {target.name}: attempt {attempt} failed ({message}); attempt {attempt + 1} in {wait}",
            )
        )
        return status.model_copy(
            update={
                "phase": "Pending",
                "attempt": attempt + 1,
                "job_name": None,
                "next_attempt_at": retry_at,
                "error_class": "Retryable",
                "message": f"attempt {attempt} failed: {message}",
            }
        )

    # -- validation ----------------------------------------------------------------------

    def _validation(self, targets: Sequence[TargetStatus]) -> list[ValidationResult]:
        """One validation per artifact, started as soon as its target is built."""
        previous = {(v.target, v.region): v for v in self.status.validation}
        recipe_targets = {t.name: t for t in self.build.spec.recipe.targets}
        out = []
        for target in targets:
            if target.phase != "Succeeded":
                continue
            for artifact in target.artifacts:
                current = previous.get((target.name, artifact.region)) or ValidationResult(
                    target=target.name, region=artifact.region, artifact=artifact.id, phase="Pending"
                )
                out.append(self._validate(recipe_targets[target.name], current))
        return out

    def _validate(self, target: Target, entry: ValidationResult) -> ValidationResult:
        if entry.phase in ("Passed", "Failed"):
            return entry
        if target.cloud not in self.settings.validators:
            return entry.model_copy(
                update={
                    "phase": "Failed",
                    "finished_at": self.now,
                    "message": f"artifacts on {target.cloud} cannot be validated yet: no validator for that cloud",
                }
            )
        job = names.validation_job(self.build.metadata.name, target.name, entry.region, 1)
        outcome = self.observed.jobs.get(job)
        if outcome is None:
            if entry.phase == "Running":
                return self._validation_failed(entry, "the validation Job disappeared before it reported a result")
            if self.build.spec.revoked is not None:
                # Nothing to prove about a revoked build.
                return entry.model_copy(
                    update={"phase": "Failed", "finished_at": self.now, "message": "revoked before validation"}
                )
            self.actions.append(CreateValidationJob(target.name, entry.region, entry.artifact))
            return entry.model_copy(update={"phase": "Running", "job_name": job, "started_at": self.now})
        entry = entry.model_copy(
            update={"phase": "Running", "job_name": job, "started_at": entry.started_at or self.now}
        )
        if outcome.state == "Active":
            if outcome.stuck:
                self.actions.append(DeleteJob(outcome.name))
                return self._validation_failed(entry, f"the validation Pod cannot start: {outcome.stuck}")
            return entry
        result = outcome.result
        checks = [CheckResult(name=c.name, passed=c.passed, message=c.message) for c in result.checks] if result else []
        finished = outcome.finished_at or self.now
        if result is not None and result.ok:
            self.actions.append(
                Emit(
                    "Normal",
                    "ArtifactValidated",
                    f"{entry.artifact} ({entry.target}, {entry.region}): {result.message}",
                )
            )
            return entry.model_copy(
                update={"phase": "Passed", "checks": checks, "finished_at": finished, "message": result.message}
            )
        message = (result.message if result is not None else "") or outcome.problem or "the validation Job failed"
        return self._validation_failed(entry.model_copy(update={"checks": checks, "finished_at": finished}), message)

    def _validation_failed(self, entry: ValidationResult, message: str) -> ValidationResult:
        self.actions.append(
            Emit("Warning", "ValidationFailed", f"{entry.artifact} ({entry.target}, {entry.region}): {message}")
        )
        return entry.model_copy(
            update={"phase": "Failed", "finished_at": entry.finished_at or self.now, "message": message}
        )

    # -- revocation ------------------------------------------------------------------------

    def _revocation(self, targets: Sequence[TargetStatus]) -> None:
        revoked = self.build.spec.revoked
        if revoked is None:
            return
        if is_true(self.status.conditions, "Deprecated"):
            return
        # Targets are terminal by now (a revoked build stops): every artifact there will be is here.
        artifacts = tuple((t.name, a.region, a.id) for t in targets for a in t.artifacts)
        if artifacts:
            self.actions.append(DeprecateArtifacts(artifacts, revoked.reason))
        self.actions.append(Emit("Warning", "Revoked", f"version {self.build.spec.version} revoked: {revoked.reason}"))

    # -- conditions ------------------------------------------------------------------------

    def _built(self, targets: Sequence[TargetStatus]) -> tuple[str, str, str]:
        phases = [t.phase for t in targets]
        if all(p == "Succeeded" for p in phases):
            count = sum(len(t.artifacts) for t in targets)
            return ("True", "Built", f"{count} artifacts in {len(targets)} targets")
        if self.blocked is not None and not any(p == "Building" for p in phases):
            return ("False", *self.blocked)
        if any(p == "Failed" for p in phases) and not any(p in ("Pending", "Building") for p in phases):
            failed = [t for t in targets if t.phase == "Failed"]
            return ("False", "BuildFailed", "; ".join(f"{t.name}: {t.message}" for t in failed))
        done = phases.count("Succeeded")
        retrying = [t for t in targets if t.phase == "Pending" and t.attempt > 1]
        detail = f"; {retrying[0].name} retries as attempt {retrying[0].attempt}" if retrying else ""
        return ("False", "Building", f"{done} of {len(targets)} targets built{detail}")

    def _validated(self, built: str, validation: Sequence[ValidationResult]) -> tuple[str, str, str]:
        failed = [v for v in validation if v.phase == "Failed"]
        if failed:
            detail = "; ".join(
                f"{v.target} {v.region}: "
                + (", ".join(f"{c.name}: {c.message}" for c in v.checks if not c.passed) or v.message)
                for v in failed
            )
            return ("False", "ValidationFailed", detail)
        if built != "True":
            return ("Unknown", "NotBuilt", "validation starts when the artifacts are built")
        if all(v.phase == "Passed" for v in validation):
            checks = sum(len(v.checks) for v in validation)
            return ("True", "Validated", f"{len(validation)} artifacts booted and passed {checks} checks")
        done = sum(v.phase == "Passed" for v in validation)
        return ("False", "Validating", f"{done} of {len(validation)} artifacts validated")

    def _conditions(self, targets: Sequence[TargetStatus], validation: Sequence[ValidationResult]) -> list[Condition]:
        generation = self.build.metadata.generation
        built = self._built(targets)
        validated = self._validated(built[0], validation)
        revoked = self.build.spec.revoked
        if revoked is not None:
            ready = ("False", "Revoked", revoked.reason)
        elif built[0] != "True":
            ready = built
        elif validated[0] == "True":
            ready = ("True", "Validated", validated[2])
        else:
            ready = ("False", validated[1], validated[2])
        conditions = list(self.status.conditions)
        for type_, (status, reason, message) in (("Built", built), ("Validated", validated), ("Ready", ready)):
            conditions = set_condition(conditions, type_, status, reason, message, self.now, generation)  # type: ignore[arg-type]
        if revoked is not None:
            conditions = set_condition(
                conditions,
                "Deprecated",
                "True",
                "Revoked",
                f"artifacts deprecated: {revoked.reason}",
                self.now,
                generation,
            )
        return conditions


def plan(build: ImageBuild, observed: BuildObservation, settings: BuildSettings) -> BuildPlan:
    return _Planner(build, observed, settings).plan()
