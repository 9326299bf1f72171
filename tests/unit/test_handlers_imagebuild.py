"""The ImageBuild handler on a fake cluster and cloud: inputs and Jobs of a new build, results
recorded from the Pods' termination messages, retries after a sweep, conflicting status writes,
and the clean-up while the build is deleted."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from goldenimage.api import labels
from goldenimage.api.group import API_VERSION
from goldenimage.api.names import build_id, build_job, validation_job
from goldenimage.api.result import ReportedArtifact, Result
from goldenimage.clouds.base import CloudResource
from goldenimage.handlers import imagebuilds
from goldenimage.handlers.context import IMAGEBUILD
from goldenimage.kube.client import CONFIGMAPS, IMAGEBUILDS, JOBS, PODS
from goldenimage.packer.inputs import digest
from support.fakecloud import FakeCloud, FakeCloudAccess
from support.fakekube import Cluster, FakeKube, Request, has_finalizer, names, owned_by

NS = "platform"
BUILD = "web-base-1"
AMI = "ami-0123456789abcdef0"
PLAYBOOK = "- hosts: all\n  tasks: []\n"
STATUS = IMAGEBUILDS.path(NS, BUILD, "status")
EU = {"name": "aws-eu", "aws": {"region": "eu-west-1", "copyToRegions": ["us-east-1"], "source": {"amiId": AMI}}}
US = {"name": "aws-us", "aws": {"region": "us-west-2", "source": {"amiId": AMI}}}
BUILT_EU = {
    "name": "aws-eu",
    "cloud": "aws",
    "phase": "Succeeded",
    "attempt": 1,
    "artifacts": [{"region": "eu-west-1", "id": "ami-eu"}, {"region": "us-east-1", "id": "ami-us"}],
}


def build(
    targets: list[dict[str, Any]] | None = None,
    *,
    policy: str = "Retain",
    annotations: dict[str, str] | None = None,
    status: dict[str, Any] | None = None,
) -> dict[str, Any]:
    recipe = {
        # A copy: a test may spoil its build's targets.
        "targets": copy.deepcopy(targets or [EU, US]),
        "provisioners": [{"ansible": {"playbook": {"configMapRef": {"name": "web-baseline", "key": "baseline.yml"}}}}],
    }
    return {
        "apiVersion": API_VERSION,
        "kind": "ImageBuild",
        "metadata": {
            "name": BUILD,
            "labels": labels.for_build("web-base", BUILD, 1),
            "annotations": {labels.DELETION_POLICY: policy, **(annotations or {})},
            "finalizers": [labels.FINALIZER],
        },
        "spec": {
            "image": "web-base",
            "version": 1,
            "fingerprint": "sha256:" + "ab" * 32,
            "reason": "Initial",
            "recipe": recipe,
            "inputs": {"web-baseline/baseline.yml": digest(PLAYBOOK)},
        },
        **({"status": status} if status else {}),
    }


def cluster(body: dict[str, Any]) -> tuple[Cluster, FakeCloud, dict[str, Any]]:
    kube = FakeKube()
    cloud = FakeCloud()
    c = Cluster(kube, FakeCloudAccess(kube, {"aws": cloud}))
    playbook = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "web-baseline"}}
    kube.put({**playbook, "data": {"baseline.yml": PLAYBOOK}}, NS)
    return c, cloud, kube.put(body, NS)


def reconcile(c: Cluster) -> list[Request]:
    before = len(c.kube.requests)
    asyncio.run(imagebuilds.reconcile(c.op, NS, BUILD))
    return c.kube.requests[before:]


def stored(c: Cluster) -> dict[str, Any]:
    found = c.kube.stored(IMAGEBUILDS, NS, BUILD)
    assert found is not None
    return found


def target(c: Cluster, name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(t for t in stored(c)["status"]["targets"] if t["name"] == name)
    return found


def condition(c: Cluster, type_: str) -> tuple[str, str]:
    found = next(x for x in stored(c)["status"]["conditions"] if x["type"] == type_)
    return found["status"], found["reason"]


def built(*artifacts: tuple[str, str]) -> Result:
    return Result(ok=True, artifacts=[ReportedArtifact(region=r, id=i) for r, i in artifacts], packer_version="1.6.6")


def test_a_new_build_creates_its_inputs_then_one_job_per_target() -> None:
    c, _, body = cluster(build())
    uid = body["metadata"]["uid"]

    done = reconcile(c)

    inputs = c.kube.stored(CONFIGMAPS, NS, f"{BUILD}-inputs")
    assert inputs is not None
    assert owned_by(inputs) == [uid]
    assert inputs["immutable"] is True
    assert PLAYBOOK in inputs["data"].values()
    for name in ("aws-eu", "aws-us"):
        # Each template is rendered for this build: its resources carry this build's id.
        assert build_id(BUILD, uid) in inputs["data"][f"{name}.pkr.hcl"]
    jobs = {j["metadata"]["name"]: j for j in c.kube.stored_all(JOBS, NS)}
    assert sorted(jobs) == sorted([build_job("web-base-1", "aws-eu", 1), build_job("web-base-1", "aws-us", 1)])
    for name, job in jobs.items():
        assert owned_by(job) == [uid]
        assert job["spec"]["backoffLimit"] == 0
        assert name == build_job("web-base-1", job["metadata"]["labels"][labels.TARGET], 1)
    # The Jobs mount the inputs: the ConfigMap comes first.
    posts = [r.path for r in done if r.verb == "POST" and not r.path.endswith("/events")]
    assert posts == [CONFIGMAPS.path(NS), JOBS.path(NS), JOBS.path(NS)]
    assert [(t["phase"], t["jobName"]) for t in stored(c)["status"]["targets"]] == [
        ("Building", build_job("web-base-1", "aws-eu", 1)),
        ("Building", build_job("web-base-1", "aws-us", 1)),
    ]
    assert condition(c, "Ready") == ("False", "Building")
    assert c.kube.reasons() == ["BuildStarted", "BuildStarted"]


def lost_finalizer() -> dict[str, Any]:
    body = build()
    body["metadata"]["finalizers"] = []
    return body


def test_a_build_that_lost_its_finalizer_gets_it_back_conditionally() -> None:
    c, _, applied = cluster(lost_finalizer())

    asyncio.run(c.op.on_event(IMAGEBUILD, "MODIFIED", NS, BUILD))

    assert has_finalizer(stored(c))
    patch = c.kube.requests_to("PATCH", IMAGEBUILDS.path(NS, BUILD))[0]
    assert patch.body["metadata"]["resourceVersion"] == applied["metadata"]["resourceVersion"]
    assert [t["phase"] for t in stored(c)["status"]["targets"]] == ["Building", "Building"]


def test_adding_the_finalizer_and_writing_the_status_is_one_pass() -> None:
    c, _, _ = cluster(lost_finalizer())

    reconcile(c)

    assert has_finalizer(stored(c))
    assert len(c.kube.requests_to("PATCH", STATUS)) == 1


def test_a_job_that_succeeded_records_its_artifacts_and_starts_their_validation() -> None:
    c, cloud, _ = cluster(build())
    reconcile(c)
    c.kube.finish_job(
        NS,
        build_job("web-base-1", "aws-eu", 1),
        built(("eu-west-1", "ami-eu"), ("us-east-1", "ami-us")),
        succeeded=True,
    )
    c.kube.start_pod(NS, build_job("web-base-1", "aws-us", 1))

    reconcile(c)

    eu = target(c, "aws-eu")
    assert eu["phase"] == "Succeeded"
    assert eu["artifacts"] == [{"region": "eu-west-1", "id": "ami-eu"}, {"region": "us-east-1", "id": "ami-us"}]
    assert eu["packerVersion"] == "1.6.6"
    assert target(c, "aws-us")["phase"] == "Building"
    assert condition(c, "Built") == ("False", "Building")
    validation = sorted(n for n in names(c.kube.stored_all(JOBS)) if "-v-" in n)
    assert validation == sorted(validation_job("web-base-1", "aws-eu", r, 1) for r in ("eu-west-1", "us-east-1"))
    assert [v["phase"] for v in stored(c)["status"]["validation"]] == ["Running", "Running"]
    assert "TargetBuilt" in c.kube.reasons("Normal")
    assert cloud.calls_to("sweep") == []


def test_a_job_the_build_does_not_control_is_no_result_of_it_whatever_its_labels() -> None:
    c, _, _ = cluster(build([EU]))
    reconcile(c)
    job = build_job("web-base-1", "aws-eu", 1)
    # The Job of the name and labels, yet controlled by nobody (as one a tenant made would be).
    c.kube.change(JOBS, NS, job, {"metadata": {"ownerReferences": None}})
    # A result that would do, from its Pod too (which carries the build's labels and UID).
    c.kube.finish_job(NS, job, built(("eu-west-1", "ami-planted"), ("us-east-1", "ami-planted")), succeeded=True)

    reconcile(c)

    assert target(c, "aws-eu")["phase"] != "Succeeded"
    assert "ami-planted" not in str(stored(c)["status"])


def test_a_failed_attempt_is_swept_and_retried_after_the_backoff() -> None:
    c, cloud, body = cluster(build([US]))
    reconcile(c)
    failed = Result(ok=False, error_class="Retryable", message="timeout waiting for SSH")
    c.kube.finish_job(NS, build_job("web-base-1", "aws-us", 1), failed, succeeded=False)

    reconcile(c)

    # What the attempt left is swept in the target's regions, by this build's id.
    swept = [(build_id(BUILD, body["metadata"]["uid"]), ("us-west-2",), "aws-us", 1)]
    assert cloud.calls_to("sweep") == swept
    us = target(c, "aws-us")
    assert (us["phase"], us["attempt"], us["errorClass"]) == ("Pending", 2, "Retryable")
    assert "timeout waiting for SSH" in us["message"]
    assert "RetryScheduled" in c.kube.reasons("Warning")
    (delay,) = c.op.triggered(IMAGEBUILD, BUILD)
    assert 28 < delay <= 30.5  # the first backoff step of Config().retry_base

    reconcile(c)  # before the backoff has passed: nothing new starts
    assert names(c.kube.stored_all(JOBS)) == [build_job("web-base-1", "aws-us", 1)]

    targets = stored(c)["status"]["targets"]
    targets[0]["nextAttemptAt"] = "2020-01-01T00:00:00Z"
    c.kube.change(IMAGEBUILDS, NS, BUILD, {"status": {"targets": targets}})
    reconcile(c)
    assert names(c.kube.stored_all(JOBS)) == sorted([build_job("web-base-1", "aws-us", n) for n in (1, 2)])
    assert len(cloud.calls_to("sweep")) == 1


def test_a_conflicting_status_write_is_planned_again_and_succeeds() -> None:
    c, _, _ = cluster(build())
    # Someone annotates the build between the operator's read and its status write.
    c.kube.before_next(
        "PATCH", STATUS, lambda: c.kube.change(IMAGEBUILDS, NS, BUILD, {"metadata": {"annotations": {"a": "b"}}})
    )

    asyncio.run(c.op.on_event(IMAGEBUILD, "MODIFIED", NS, BUILD))

    writes = c.kube.requests_to("PATCH", STATUS)
    assert len(writes) == 2
    assert writes[0].body["metadata"]["resourceVersion"] != writes[1].body["metadata"]["resourceVersion"]
    assert [t["phase"] for t in stored(c)["status"]["targets"]] == ["Building", "Building"]
    assert stored(c)["metadata"]["annotations"]["a"] == "b"
    # The second plan found the Jobs of the first and created none again.
    assert len(c.kube.requests_to("POST", JOBS.path(NS))) == 2
    assert c.op.triggers == []


def test_a_conflicting_status_write_loses_no_event() -> None:
    c, _, _ = cluster(build())
    c.kube.before_next(
        "PATCH", STATUS, lambda: c.kube.change(IMAGEBUILDS, NS, BUILD, {"metadata": {"annotations": {"a": "b"}}})
    )

    asyncio.run(c.op.on_event(IMAGEBUILD, "MODIFIED", NS, BUILD))

    assert c.kube.reasons() == ["BuildStarted", "BuildStarted"]


# -- deletion ----------------------------------------------------------------------------------


def deleting(c: Cluster) -> None:
    c.kube.delete_externally(IMAGEBUILDS, NS, BUILD)
    assert stored(c)["metadata"].get("deletionTimestamp")


def test_deletion_stops_the_jobs_waits_for_their_pods_then_sweeps_and_lets_go() -> None:
    c, cloud, body = cluster(build([EU]))
    reconcile(c)
    c.kube.start_pod(NS, build_job("web-base-1", "aws-eu", 1))
    deleting(c)

    done = reconcile(c)

    assert [(r.verb, r.path) for r in done if r.verb == "DELETE"] == [
        ("DELETE", JOBS.path(NS, build_job("web-base-1", "aws-eu", 1)))
    ]
    assert c.kube.stored_all(JOBS) == []
    # Packer cleans up after SIGTERM: nothing is swept under its feet, and the build stays.
    assert cloud.calls == []
    assert has_finalizer(stored(c))
    assert c.op.triggered(IMAGEBUILD, BUILD) == [3.0]

    c.kube.change(PODS, NS, build_job("web-base-1", "aws-eu", 1) + "-pod", {"status": {"phase": "Failed"}})
    done = reconcile(c)

    uid = body["metadata"]["uid"]
    assert cloud.calls_to("sweep") == [(build_id(BUILD, uid), ("eu-west-1", "us-east-1"), "aws-eu", None)]
    assert cloud.calls_to("find_artifacts") == cloud.calls_to("delete_artifact") == []  # Retain
    assert c.kube.stored(IMAGEBUILDS, NS, BUILD) is None
    release = next(r for r in done if r.verb == "PATCH")
    assert release.body["metadata"]["finalizers"] == []
    assert "resourceVersion" in release.body["metadata"]


def channel(build_name: str) -> dict[str, Any]:
    entry = {"version": 1, "build": build_name, "promotedAt": "2026-11-21T10:00:00Z", "reason": "LatestValidated"}
    return {
        "apiVersion": API_VERSION,
        "kind": "ImageChannel",
        "metadata": {"name": "web-prod"},
        "spec": {"image": "web-base", "source": {"latestValidated": {}}},
        "status": {"current": entry},
    }


@pytest.mark.parametrize("referenced", [True, False])
def test_delete_policy_removes_artifacts_only_when_no_channel_refers_to_the_build(referenced: bool) -> None:
    c, cloud, body = cluster(build([EU], policy="Delete", status={"targets": [BUILT_EU]}))
    c.kube.put(channel(BUILD if referenced else "web-base-2"), NS)
    # An image of the build that never made it into the status (say, the runner was killed).
    cloud.artifacts = [CloudResource("image", "us-east-1", "ami-unrecorded")]
    deleting(c)

    reconcile(c)

    ident = build_id(BUILD, body["metadata"]["uid"])
    assert len(cloud.calls_to("sweep")) == 1  # temporary resources go whatever the policy
    if referenced:
        assert cloud.calls_to("delete_artifact") == []
        assert "ArtifactsKept" in c.kube.reasons("Warning")
    else:
        assert sorted(cloud.calls_to("delete_artifact")) == [
            ("eu-west-1", "ami-eu", ident),
            ("us-east-1", "ami-unrecorded", ident),
            ("us-east-1", "ami-us", ident),
        ]
        assert c.kube.reasons() == []
    assert c.kube.stored(IMAGEBUILDS, NS, BUILD) is None


def test_skip_cleanup_lets_go_at_once_without_touching_the_cloud() -> None:
    skip = {labels.SKIP_CLEANUP: "true"}
    c, cloud, _ = cluster(build([EU], policy="Delete", annotations=skip))
    reconcile(c)
    c.kube.start_pod(NS, build_job("web-base-1", "aws-eu", 1))  # even while its Pod still runs
    deleting(c)

    reconcile(c)

    assert c.kube.stored_all(JOBS) == []
    assert cloud.calls == []
    assert c.kube.reasons("Warning") == ["CleanupSkipped"]
    assert c.kube.stored(IMAGEBUILDS, NS, BUILD) is None


def test_an_invalid_build_being_deleted_still_loses_its_finalizer() -> None:
    body = build([EU], policy="Delete", status={"targets": [BUILT_EU]})
    body["spec"]["recipe"]["targets"][0]["aws"]["flavour"] = "unknown to the models"
    c, cloud, _ = cluster(body)
    deleting(c)

    reconcile(c)

    assert c.kube.stored(IMAGEBUILDS, NS, BUILD) is None
    assert cloud.calls == []  # nothing of an invalid object is trusted, artifacts included
    assert c.kube.reasons("Warning") == ["CleanupSkipped"]


def test_a_build_deleted_without_the_operators_finalizer_is_left_alone() -> None:
    body = build([EU])
    body["metadata"]["finalizers"] = ["someone.else/hold"]
    c, cloud, _ = cluster(body)
    deleting(c)

    assert [r.verb for r in reconcile(c)] == ["GET"]
    assert cloud.calls == []
    assert stored(c)["metadata"]["finalizers"] == ["someone.else/hold"]


# -- the result finalizer ------------------------------------------------------------------------


def pod_of(job: str) -> str:
    return f"{job}-pod"


def held(c: Cluster, pod: str) -> bool:
    found = c.kube.stored(PODS, NS, pod)
    return found is not None and labels.RESULT_FINALIZER in (found["metadata"].get("finalizers") or [])


def test_a_result_whose_job_was_deleted_is_recorded_from_its_pod_and_the_pod_let_go_after() -> None:
    c, _, _ = cluster(build([EU]))
    reconcile(c)
    job = build_job("web-base-1", "aws-eu", 1)
    c.kube.finish_job(NS, job, built(("eu-west-1", "ami-eu"), ("us-east-1", "ami-us")), succeeded=True)
    assert held(c, pod_of(job))  # the Job's template gave the Pod the finalizer
    # The Job goes before the operator read it (its TTL ran out, or a user deleted it); the
    # garbage collector marks the Pod for deletion, and the finalizer keeps it.
    c.kube.remove(JOBS, NS, job)
    c.kube.delete_externally(PODS, NS, pod_of(job))

    done = reconcile(c)

    eu = target(c, "aws-eu")
    assert (eu["phase"], eu["attempt"]) == ("Succeeded", 1)
    assert eu["artifacts"] == [{"region": "eu-west-1", "id": "ami-eu"}, {"region": "us-east-1", "id": "ami-us"}]
    assert job not in names(c.kube.stored_all(JOBS))  # not started again
    assert "RetryScheduled" not in c.kube.reasons()
    # Let go only after the status that records the artifacts was written; then the Pod goes.
    writes = [(r.verb, r.path) for r in done if r.verb == "PATCH"]
    assert writes.index(("PATCH", STATUS)) < writes.index(("PATCH", PODS.path(NS, pod_of(job))))
    assert c.kube.stored(PODS, NS, pod_of(job)) is None


def test_a_pod_is_kept_while_the_status_that_records_its_result_is_not_written() -> None:
    c, _, _ = cluster(build([EU]))
    reconcile(c)
    job = build_job("web-base-1", "aws-eu", 1)
    c.kube.finish_job(NS, job, built(("eu-west-1", "ami-eu"), ("us-east-1", "ami-us")), succeeded=True)
    c.kube.remove(JOBS, NS, job)
    c.kube.fail_next("PATCH", STATUS, ApiException(status=500, reason="etcd timeout"))

    with pytest.raises(ApiException):
        reconcile(c)
    assert held(c, pod_of(job))
    assert target(c, "aws-eu")["phase"] == "Building"

    reconcile(c)
    assert target(c, "aws-eu")["phase"] == "Succeeded"
    assert not held(c, pod_of(job))


def test_validation_pods_are_let_go_once_validated_and_a_finished_build_lets_go_of_late_ones() -> None:
    c, _, _ = cluster(build([EU]))
    reconcile(c)
    job = build_job("web-base-1", "aws-eu", 1)
    c.kube.finish_job(NS, job, built(("eu-west-1", "ami-eu"), ("us-east-1", "ami-us")), succeeded=True)
    reconcile(c)
    assert not held(c, pod_of(job))
    passed = Result(kind="validate", ok=True, message="booted")
    checks = [validation_job("web-base-1", "aws-eu", r, 1) for r in ("eu-west-1", "us-east-1")]
    c.kube.finish_job(NS, checks[0], passed, succeeded=True)
    reconcile(c)
    assert not held(c, pod_of(checks[0]))
    c.kube.start_pod(NS, checks[1])
    reconcile(c)
    assert held(c, pod_of(checks[1]))  # still running: its result is still to come
    c.kube.finish_job(NS, checks[1], passed, succeeded=True)
    reconcile(c)
    assert condition(c, "Ready") == ("True", "Validated")
    assert not held(c, pod_of(checks[1]))

    # A Pod held after the build finished (a release that failed, say) is still let go.
    c.kube.change(PODS, NS, pod_of(job), {"metadata": {"finalizers": [labels.RESULT_FINALIZER]}})
    reconcile(c)
    assert not held(c, pod_of(job))


def test_a_pod_another_build_of_the_name_left_is_let_go_and_never_read() -> None:
    c, _, _ = cluster(build([EU]))
    reconcile(c)
    job = build_job("web-base-1", "aws-eu", 1)
    c.kube.finish_job(NS, job, built(("eu-west-1", "ami-old"), ("us-east-1", "ami-old")), succeeded=True)
    c.kube.remove(JOBS, NS, job)
    pod = pod_of(job)
    c.kube.change(PODS, NS, pod, {"metadata": {"labels": {labels.BUILD_UID: "an-earlier-build"}}})

    reconcile(c)

    assert "ami-old" not in str(stored(c)["status"])
    assert not held(c, pod)


def test_a_deleted_build_lets_go_of_its_pods_before_its_own_finalizer() -> None:
    c, _, _ = cluster(build([EU]))
    reconcile(c)
    job = build_job("web-base-1", "aws-eu", 1)
    c.kube.finish_job(NS, job, Result(ok=False, message="boom"), succeeded=False)
    deleting(c)

    done = reconcile(c)

    assert not held(c, pod_of(job))
    assert c.kube.stored(IMAGEBUILDS, NS, BUILD) is None
    patches = [r.path for r in done if r.verb == "PATCH"]
    assert patches == [PODS.path(NS, pod_of(job)), IMAGEBUILDS.path(NS, BUILD)]
