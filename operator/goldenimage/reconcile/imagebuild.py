"""Planning one ImageBuild: inputs, one Job per target and attempt, retries with backoff,
artifacts recorded as results arrive (once checked), validation per artifact, revocation, and
the Built, Validated, Available and Ready conditions (pure)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from ..api import labels, names
from ..api.conditions import Condition, is_true, set_condition
from ..api.goldenimage import Target
from ..api.identity import BuildIdentity
from ..api.imagebuild import (
    Artifact,
    CheckResult,
    ImageBuildStatus,
    MissingArtifact,
    TargetStatus,
    ValidationResult,
)
from ..api.resources import ImageBuild
from ..clouds import registry
from ..packer import inputs as packer_inputs
from ..packer.bundle import BundleTooLargeError, bundle
from ..packer.render import Settings
from . import backoff
from .actions import (
    Action,
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
from .outcomes import JobOutcome


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
    # Recorded artifacts found gone from their cloud, as (region, id); None when not checked in
    # this pass (what the status says stands).
    missing: frozenset[tuple[str, str]] | None = None
    # Pods labelled with the build's name that the result finalizer holds but that are not this
    # build's (left by an earlier build of the name): nothing reads them, so they are released.
    stray_pods: Sequence[str] = ()


@dataclass(frozen=True)
class BuildSettings:
    retry_base: timedelta = timedelta(seconds=30)
    retry_cap: timedelta = timedelta(minutes=30)
    render: Settings = field(default_factory=Settings)


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


def undeclared(target: Target, artifacts: Sequence[tuple[str, str]]) -> list[str]:
    """Reported artifacts in regions the target does not build in (a result is a claim)."""
    regions = registry.of(target).regions(target)
    return [f"{ident} in {region or 'no region'}" for region, ident in artifacts if region not in regions]


def unaccounted(target: Target, artifacts: Sequence[tuple[str, str]]) -> str | None:
    """Why a reported set of artifacts is not exactly one per region of the target, if it is not.
    Validation boots one artifact per region: a second one there would never be booted, and a
    region without one would leave the target's consumers there without an image."""
    foreign = undeclared(target, artifacts)
    if foreign:
        return f"the build reported artifacts outside the target's regions: {', '.join(foreign[:5])}"
    seen: dict[str, str] = {}
    for region, ident in artifacts:
        if region in seen:
            return f"the build reported two artifacts in {region}: {seen[region]} and {ident}"
        seen[region] = ident
    lacking = [r for r in registry.of(target).regions(target) if r not in seen]
    if lacking:
        return f"the build reported no artifact in {', '.join(lacking)}"
    return None


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


# Validations of one build that run at once (each boots an instance): the rest wait their turn.
VALIDATIONS_AT_ONCE = 8


def _settled(outcome: JobOutcome, targets: Mapping[str, TargetStatus], open_: set[tuple[str, str]]) -> bool:
    """Whether a status with these targets and open validations has recorded what the Job could
    report, or moved past it (a later attempt, a target that ended, a target not built at all)."""
    if outcome.role == labels.ROLE_VALIDATION:
        return (outcome.target, outcome.region) not in open_
    target = targets.get(outcome.target)
    return target is None or target.phase in ("Succeeded", "Failed") or outcome.attempt < target.attempt


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
        self.validation_slots = VALIDATIONS_AT_ONCE
        self.blocked: tuple[str, str] | None = None

    def plan(self) -> BuildPlan:
        if labels.FINALIZER not in self.build.metadata.finalizers:
            self.actions.append(AddFinalizer())
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
        self._release(targets, validation)
        missing = self._missing(targets)
        conditions = self._conditions(targets, validation, missing)
        status = self.status.model_copy(
            update={
                "targets": targets,
                "validation": validation,
                "missing_artifacts": missing,
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
                BuildIdentity.of(self.build),
                sources=self.build.spec.sources,
                contents=self.observed.input_contents or {},
                settings=self.settings.render,
            )
        except (BundleTooLargeError, packer_inputs.MissingInputError) as exc:
            self.blocked = ("InvalidInputs", str(exc))
            return
        self.actions.append(CreateInputs(data))

    # -- targets ---------------------------------------------------------------------------

    def _job(
        self, name: str, recorded: str | None, role: str, target: str, attempt: int, region: str = ""
    ) -> JobOutcome | None:
        """The Job of that name, else the one the status recorded (named by an earlier release),
        if its labels say it is the one wanted; any other Job of the name is not taken for it
        (creating the wanted one then reports the name as taken)."""
        for candidate in dict.fromkeys(n for n in (name, recorded) if n):
            outcome = self.observed.jobs.get(candidate)
            if outcome is not None and outcome.is_for(role, target, attempt, region):
                return outcome
        return None

    def _target(self, target: Target, current: TargetStatus | None) -> TargetStatus:
        status = current or TargetStatus(name=target.name, cloud=target.cloud, phase="Pending", attempt=1)
        if status.phase in ("Succeeded", "Failed"):
            return status
        job = names.build_job(self.build.metadata.name, target.name, status.attempt)
        outcome = self._job(job, status.job_name, labels.ROLE_BUILD, target.name, status.attempt)
        if self.build.spec.revoked is not None and not (outcome and outcome.result and outcome.result.ok):
            # A revoked version is not worth finishing.
            if outcome is not None and outcome.state == "Active":
                self.actions.append(DeleteJob(outcome.name))
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
            create = CreateJob(target.name, status.attempt)
            started = f"target {target.name}: attempt {status.attempt} started as Job {job}"
            self.actions += [create, Emit("Normal", "BuildStarted", started, announces=create)]
            return status.model_copy(
                update={"phase": "Building", "job_name": job, "started_at": self.now, "next_attempt_at": None}
            )
        status = status.model_copy(update={"phase": "Building", "job_name": outcome.name})
        if status.started_at is None:
            # The status write that went with the Job's creation was lost (e.g. a restart).
            status = status.model_copy(update={"started_at": outcome.started_at or self.now})
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
        reported = [(a.region, a.id) for a in outcome.result.artifacts]
        problem = unaccounted(target, reported)
        if problem is not None:
            return self._failed(target, status, "Permanent", problem, outcome.finished_at)
        artifacts = [Artifact(region=a.region, id=a.id, state=a.state or None) for a in outcome.result.artifacts]
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
        if registry.of(target).capabilities.sweep:
            self.actions.append(SweepAttempt(target.name, status.attempt))
        max_attempts = self.build.spec.recipe.build_policy.max_attempts
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

    def _release(self, targets: Sequence[TargetStatus], validation: Sequence[ValidationResult]) -> None:
        """Let go of the Pods whose outcome the new status no longer waits for."""
        by_name = {t.name: t for t in targets}
        open_ = {(v.target, v.region) for v in validation if v.phase not in ("Passed", "Failed")}
        pods = set(self.observed.stray_pods)
        for outcome in self.observed.jobs.values():
            if outcome.held and _settled(outcome, by_name, open_):
                pods.update(outcome.held)
        if pods:
            self.actions.append(ReleasePods(tuple(sorted(pods))))

    # -- validation ----------------------------------------------------------------------

    def _validation(self, targets: Sequence[TargetStatus]) -> list[ValidationResult]:
        """One validation per artifact, started as soon as its target is built."""
        previous = {(v.target, v.region): v for v in self.status.validation}
        self.validation_slots = VALIDATIONS_AT_ONCE - sum(v.phase == "Running" for v in self.status.validation)
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
        if not registry.of(target).capabilities.validate:
            return entry.model_copy(
                update={
                    "phase": "Failed",
                    "finished_at": self.now,
                    "message": f"artifacts on {target.cloud} cannot be validated yet: no validator for that cloud",
                }
            )
        job = names.validation_job(self.build.metadata.name, target.name, entry.region, 1)
        outcome = self._job(job, entry.job_name, labels.ROLE_VALIDATION, target.name, 1, entry.region)
        if outcome is None:
            if entry.phase == "Running":
                return self._validation_failed(entry, "the validation Job disappeared before it reported a result")
            if self.build.spec.revoked is not None:
                # Nothing to prove about a revoked build.
                return entry.model_copy(
                    update={"phase": "Failed", "finished_at": self.now, "message": "revoked before validation"}
                )
            if self.validation_slots <= 0:
                return entry  # Pending until one of those running finishes
            self.validation_slots -= 1
            self.actions.append(CreateValidationJob(target.name, entry.region, entry.artifact))
            return entry.model_copy(update={"phase": "Running", "job_name": job, "started_at": self.now})
        entry = entry.model_copy(
            update={
                "phase": "Running",
                "job_name": outcome.name,
                "started_at": entry.started_at or outcome.started_at or self.now,
            }
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
        clouds = {t.name: registry.of(t) for t in self.build.spec.recipe.targets}
        artifacts = tuple(
            (t.name, a.region, a.id) for t in targets if clouds[t.name].capabilities.deprecate for a in t.artifacts
        )
        if artifacts:
            self.actions.append(DeprecateArtifacts(artifacts, revoked.reason))
        kept = sorted(
            {clouds[t.name].name for t in targets if t.artifacts and not clouds[t.name].capabilities.deprecate}
        )
        if kept:
            where = ", ".join(kept)
            self.actions.append(
                Emit(
                    "Warning", "DeprecationUnsupported", f"artifacts on {where} are not marked deprecated in the cloud"
                )
            )
        self.actions.append(Emit("Warning", "Revoked", f"version {self.build.spec.version} revoked: {revoked.reason}"))

    # -- availability --------------------------------------------------------------------

    def _missing(self, targets: Sequence[TargetStatus]) -> list[MissingArtifact]:
        """Recorded artifacts found gone from their cloud (as last observed)."""
        if self.observed.missing is None:
            return list(self.status.missing_artifacts)
        found = [
            MissingArtifact(target=t.name, region=a.region, id=a.id)
            for t in targets
            for a in t.artifacts
            if (a.region, a.id) in self.observed.missing
        ]
        if found and not self.status.missing_artifacts:
            listed = ", ".join(f"{m.id} in {m.region}" for m in found[:5])
            self.actions.append(Emit("Warning", "ArtifactsMissing", f"artifacts gone from their cloud: {listed}"))
        return found

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

    def _conditions(
        self,
        targets: Sequence[TargetStatus],
        validation: Sequence[ValidationResult],
        missing: Sequence[MissingArtifact],
    ) -> list[Condition]:
        generation = self.build.metadata.generation
        built = self._built(targets)
        validated = self._validated(built[0], validation)
        revoked = self.build.spec.revoked
        gone = ", ".join(f"{m.id} in {m.region}" for m in missing[:5]) + (
            f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        )
        if revoked is not None:
            ready = ("False", "Revoked", revoked.reason)
        elif missing:
            ready = ("False", "ArtifactsMissing", f"artifacts gone from their cloud: {gone}")
        elif built[0] != "True":
            ready = built
        elif validated[0] == "True":
            ready = ("True", "Validated", validated[2])
        else:
            ready = ("False", validated[1], validated[2])
        conditions = list(self.status.conditions)
        for type_, (status, reason, message) in (("Built", built), ("Validated", validated), ("Ready", ready)):
            conditions = set_condition(conditions, type_, status, reason, message, self.now, generation)  # type: ignore[arg-type]
        if missing:
            conditions = set_condition(conditions, "Available", "False", "ArtifactsMissing", gone, self.now, generation)
        elif built[0] == "True":
            conditions = set_condition(
                conditions, "Available", "True", "Present", "every artifact exists", self.now, generation
            )
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
