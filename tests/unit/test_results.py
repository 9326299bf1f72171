"""The runner's result: encoding within the kubelet's 4 KiB, and clear refusals of bad results."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from goldenimage.api.result import MAX_BYTES, ReportedArtifact, Result, ResultError, decode, encode
from goldenimage.reconcile import outcomes
from goldenimage.reconcile.outcomes import observe


def test_round_trip() -> None:
    result = Result(ok=True, artifacts=[ReportedArtifact(region="eu-west-1", id="ami-1")], packer_version="1.6.6")
    assert decode(encode(result)) == result


def test_a_long_message_is_shortened_to_fit_but_artifacts_are_kept() -> None:
    artifacts = [ReportedArtifact(region=f"r-{i}", id=f"ami-{i:017x}") for i in range(40)]
    result = Result(ok=False, artifacts=artifacts, error_class="Retryable", message="x" * 10_000)
    text = encode(result)
    assert len(text.encode()) <= MAX_BYTES
    back = decode(text)
    assert back.artifacts == artifacts
    assert back.message.endswith("[truncated]")


@pytest.mark.parametrize(
    ("text", "error"),
    [
        (None, "left no result"),
        ("", "left no result"),
        ('{"v":1,"ok":tr', "not JSON"),
        ("[1, 2]", "not a JSON object"),
        ('{"v": 2, "ok": true}', "version 2"),
        ('{"v": 1}', "malformed: ok"),
        ('{"v": 1, "ok": true, "artifacts": [{"region": "x"}]}', "malformed: artifacts.0.id"),
        ('{"v": 1, "ok": true, "extra": 1}', "malformed: extra"),
        ('{"v": 1, "ok": true, "message": "' + "y" * 5000 + '"}', "over the 4096-byte limit"),
    ],
)
def test_bad_results_are_refused_clearly(text: str | None, error: str) -> None:
    with pytest.raises(ResultError, match=error):
        decode(text)


def _job(conditions: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "b-1-t-2", "labels": {"goldenimage.io/target": "t", "goldenimage.io/attempt": "2"}},
        "spec": spec,
        "status": {"conditions": conditions},
    }


def _pod(state: dict[str, Any]) -> dict[str, Any]:
    return {
        "metadata": {"name": "p", "creationTimestamp": "2026-01-01T00:00:00Z"},
        "status": {"containerStatuses": [{"state": state}]},
    }


def test_observe_success() -> None:
    message = encode(Result(ok=True, artifacts=[ReportedArtifact(region="eu-west-1", id="ami-1")]))
    outcome = observe(
        _job([{"type": "Complete", "status": "True", "lastTransitionTime": "2026-01-01T00:01:00Z"}]),
        [_pod({"terminated": {"exitCode": 0, "message": message}})],
    )
    assert outcome.state == "Succeeded" and outcome.target == "t" and outcome.attempt == 2
    assert outcome.result is not None and outcome.result.artifacts[0].id == "ami-1"
    assert outcome.finished_at is not None


def test_observe_deadline_and_unreadable_result() -> None:
    outcome = observe(
        _job([{"type": "Failed", "status": "True", "reason": "DeadlineExceeded"}], activeDeadlineSeconds=600),
        [_pod({"terminated": {"exitCode": 137, "message": '{"v":1,"ok":fa'}})],
    )
    assert outcome.state == "Failed" and outcome.result is None
    assert (
        "past its deadline (600s)" in outcome.problem
        and "exit code 137" in outcome.problem
        and "not JSON" in outcome.problem
    )


def test_observe_stuck_pod() -> None:
    waiting = {"waiting": {"reason": "CreateContainerConfigError", "message": 'secret "rhsm" not found'}}
    outcome = observe(_job([]), [_pod(waiting)])
    assert outcome.state == "Active" and outcome.stuck == 'CreateContainerConfigError: secret "rhsm" not found'
    assert json.dumps(outcome.problem) == '""'


def test_observe_reads_when_the_job_started() -> None:
    job = _job([])
    job["metadata"]["creationTimestamp"] = "2026-01-01T00:00:00Z"
    assert observe(job, []).started_at == datetime(2026, 1, 1, tzinfo=UTC)
    job["status"]["startTime"] = "2026-01-01T00:00:05Z"
    assert observe(job, []).started_at == datetime(2026, 1, 1, 0, 0, 5, tzinfo=UTC)


def test_a_pod_whose_labels_are_not_ours_to_read_is_no_attempt() -> None:
    """Anyone who may create Pods can label one like ours: a label that is no number names no
    attempt, and nothing raises."""
    pod = {
        "metadata": {
            "name": "p",
            "labels": {"goldenimage.io/attempt": "x'; drop", "goldenimage.io/target": "aws-eu"},
        },
        "status": {"phase": "Succeeded"},
    }
    found = outcomes.observe_pod(pod)
    assert found.attempt == 0 and not found.is_for("build", "aws-eu", 1)
    job = {"metadata": {"name": "j", "labels": pod["metadata"]["labels"]}, "status": {}}
    assert observe(job, []).attempt == 0
