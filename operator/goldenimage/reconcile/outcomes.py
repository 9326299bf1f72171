"""What a Job says, as the planners observe it: its state, and the runner's result from its Pod's
termination message (pure: reads Job and Pod objects as dicts)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal

from ..api import labels, names
from ..api.identity import controller_uid
from ..api.result import Result, ResultError, decode

# Pod waiting reasons that no amount of waiting fixes: the spec refers to something missing.
STUCK_REASONS = frozenset({"CreateContainerConfigError", "InvalidImageName", "ErrImageNeverPull"})


@dataclass(frozen=True)
class JobOutcome:
    name: str
    target: str
    attempt: int
    state: Literal["Active", "Succeeded", "Failed"]
    role: str = "build"
    region: str = ""
    result: Result | None = None
    # Why there is no usable result, or why the Job failed without one.
    problem: str = ""
    # A Pod that cannot start (e.g. a Secret it needs is missing): the attempt will never run.
    stuck: str = ""
    # When the Job started (or was created): a status that lost its own start time takes this.
    started_at: datetime | None = None
    finished_at: datetime | None = None
    # Its Pods that the operator's result finalizer still holds: released once the status
    # records the outcome (or nobody wants it any more).
    held: tuple[str, ...] = ()

    def is_for(self, role: str, target: str, attempt: int, region: str = "") -> bool:
        """Whether the Job's labels say it is this one: a name alone proves nothing."""
        return (self.role, self.target, self.attempt, self.region) == (role, target, attempt, region)


def _time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


def _terminated(pod: Mapping[str, Any]) -> bool:
    return any("terminated" in s.get("state", {}) for s in pod.get("status", {}).get("containerStatuses", []))


def held(pods: Sequence[Mapping[str, Any]]) -> tuple[str, ...]:
    """The names of those Pods that the operator's result finalizer keeps."""
    return tuple(
        sorted(
            p["metadata"]["name"] for p in pods if labels.RESULT_FINALIZER in (p["metadata"].get("finalizers") or [])
        )
    )


def _result(pods: Sequence[Mapping[str, Any]], state: str, problem: str) -> tuple[Result | None, str, str]:
    """(result, problem, stuck) from the Pods' container statuses."""
    result: Result | None = None
    stuck = ""
    for pod in sorted(pods, key=lambda p: p["metadata"].get("creationTimestamp", "")):
        for status in pod.get("status", {}).get("containerStatuses", []):
            waiting = status.get("state", {}).get("waiting")
            if waiting and waiting.get("reason") in STUCK_REASONS:
                stuck = f"{waiting['reason']}: {waiting.get('message', '')}".strip()
            terminated = status.get("state", {}).get("terminated")
            if terminated:
                try:
                    result = decode(terminated.get("message"))
                except ResultError as exc:
                    if state != "Active":
                        exit_code = terminated.get("exitCode")
                        problem = f"{problem + '; ' if problem else ''}exit code {exit_code}: {exc}"
    return result, problem, stuck


def observe(job: Mapping[str, Any], pods: Sequence[Mapping[str, Any]]) -> JobOutcome:
    meta = job["metadata"]
    job_labels = meta.get("labels", {})
    conditions = {c["type"]: c for c in job.get("status", {}).get("conditions", []) if c.get("status") == "True"}
    state: Literal["Active", "Succeeded", "Failed"] = "Active"
    finished = None
    problem = ""
    # Only the final conditions count: with FailureTarget or SuccessCriteriaMet the Pod may still be
    # terminating, and Packer still cleaning up.
    if "Complete" in conditions:
        state = "Succeeded"
        finished = _time(conditions["Complete"].get("lastTransitionTime"))
    elif "Failed" in conditions:
        state = "Failed"
        failed = conditions["Failed"]
        finished = _time(failed.get("lastTransitionTime"))
        if failed.get("reason") == "DeadlineExceeded":
            deadline = job.get("spec", {}).get("activeDeadlineSeconds")
            problem = f"the Job ran past its deadline ({deadline}s) and was stopped"
        else:
            problem = failed.get("message") or failed.get("reason") or "the Job failed"

    result, problem, stuck = _result(pods, state, problem)
    if state == "Failed" and result is None and not any(_terminated(p) for p in pods):
        problem = f"{problem}: the build Pod is gone (deleted or evicted) and left no result"
    return JobOutcome(
        name=meta["name"],
        **_identity(job_labels),
        state=state,
        result=result,
        problem=problem,
        stuck=stuck if state == "Active" else "",
        started_at=_time(job.get("status", {}).get("startTime")) or _time(meta.get("creationTimestamp")),
        finished_at=finished,
        held=held(pods),
    )


def _attempt(pod_labels: Mapping[str, str]) -> int:
    """The attempt a Pod's label names; 0 (no attempt of ours) when it is not a number: anyone who
    may create Pods can write the label."""
    value = str(pod_labels.get(labels.ATTEMPT, ""))
    return int(value) if value.isdigit() and len(value) <= 6 else 0


def _identity(object_labels: Mapping[str, str]) -> dict[str, Any]:
    """Which attempt a Job (or its Pod) runs, as its labels say."""
    return {
        "target": object_labels.get(labels.TARGET, ""),
        "attempt": _attempt(object_labels),
        "role": object_labels.get(labels.ROLE, "build"),
        "region": object_labels.get(labels.REGION, ""),
    }


def job_name(pod: Mapping[str, Any]) -> str:
    """The name of the Job that made the Pod: the Job controller labels its Pods with it; else the
    name the operator gives the Job of the attempt the Pod's labels name."""
    pod_labels = pod["metadata"].get("labels") or {}
    given = pod_labels.get("batch.kubernetes.io/job-name") or pod_labels.get("job-name")
    if given:
        return str(given)
    build, target = pod_labels.get(labels.BUILD, ""), pod_labels.get(labels.TARGET, "")
    attempt = _attempt(pod_labels)
    if pod_labels.get(labels.ROLE) == labels.ROLE_VALIDATION:
        return names.validation_job(build, target, pod_labels.get(labels.REGION, ""), attempt)
    return names.build_job(build, target, attempt)


def observe_pod(pod: Mapping[str, Any]) -> JobOutcome:
    """The outcome of a Job that is gone, from the Pod it left (kept by the result finalizer): the
    Pod's labels say which attempt it ran, its phase how it ended, its termination message what
    it reported. A Pod still running is Active: deleted with its Job, it stops soon, and its
    result (if any) is read then."""
    meta = pod["metadata"]
    pod_labels = meta.get("labels") or {}
    phase = pod.get("status", {}).get("phase")
    state: Literal["Active", "Succeeded", "Failed"] = (
        "Succeeded" if phase == "Succeeded" else "Failed" if phase == "Failed" else "Active"
    )
    result, problem, stuck = _result([pod], state, "")
    if state == "Failed" and result is None:
        reason = pod.get("status", {}).get("message") or pod.get("status", {}).get("reason") or "the Pod failed"
        problem = f"{reason}{'; ' + problem if problem else ''} (its Job is gone)"
    ended = [
        _time(s["state"]["terminated"].get("finishedAt"))
        for s in pod.get("status", {}).get("containerStatuses", [])
        if "terminated" in s.get("state", {})
    ]
    return JobOutcome(
        name=job_name(pod),
        **_identity(pod_labels),
        state=state,
        result=result,
        problem=problem,
        stuck=stuck if state == "Active" else "",
        started_at=_time(pod.get("status", {}).get("startTime")) or _time(meta.get("creationTimestamp")),
        finished_at=next((t for t in ended if t is not None), None) if state != "Active" else None,
        held=held([pod]),
    )


def observe_pods(pods: Sequence[Mapping[str, Any]]) -> JobOutcome:
    """The outcome of a gone Job from the Pods it left: the newest that ended (else the newest),
    holding all of them, so that they are all let go together."""
    ordered = sorted(pods, key=lambda p: p["metadata"].get("creationTimestamp", ""))
    ended = [p for p in ordered if _terminated(p)]
    return replace(observe_pod((ended or ordered)[-1]), held=held(pods))


def of_build(
    jobs: Sequence[Mapping[str, Any]], pods: Sequence[Mapping[str, Any]], build_uid: str
) -> tuple[dict[str, JobOutcome], list[str]]:
    """The outcomes of a build's Jobs by name, and the held Pods nothing reads (to be let go).

    A label is no proof of whose object it is: a Job counts when the build controls it, a Pod when
    such a Job does. A Pod whose Job is gone (its TTL ran out, someone deleted it) was kept by the
    result finalizer and stands in for its Job when its build-uid label is this build's; Pods of
    another build (an earlier one of the name), of a Job that is not this build's, or of a Job
    there is again, are only let go."""
    pods_by_job: dict[str, list[Mapping[str, Any]]] = {}
    for pod in pods:
        pods_by_job.setdefault(controller_uid(pod) or "", []).append(pod)
    ours = [j for j in jobs if controller_uid(j) == build_uid]
    found = {j["metadata"]["name"]: observe(j, pods_by_job.get(j["metadata"].get("uid") or "-", [])) for j in ours}
    read = {j["metadata"].get("uid") for j in ours}
    existing = {j["metadata"].get("uid") for j in jobs}
    orphans: dict[str, list[Mapping[str, Any]]] = {}
    stray: list[str] = []
    for owner, owned in pods_by_job.items():
        if owner in read:
            continue
        for pod in owned:
            mine = (pod["metadata"].get("labels") or {}).get(labels.BUILD_UID) == build_uid
            if mine and owner not in existing:
                orphans.setdefault(job_name(pod), []).append(pod)
            else:
                stray += held([pod])
    for job, left in orphans.items():
        if job in found:
            stray += held(left)
        else:
            found[job] = observe_pods(left)
    return found, sorted(stray)
