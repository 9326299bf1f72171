"""The Operator's reconcile loop on a fake cluster and cloud: what it makes of permanent,
retryable, gone and conflicting outcomes of a reconcile."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import pytest

from goldenimage.api import labels
from goldenimage.api.errors import CloudError
from goldenimage.api.group import API_VERSION
from goldenimage.api.names import build_job
from goldenimage.handlers.context import CLOUD_RETRY_SECONDS, CONFLICT_RETRIES, GOLDENIMAGE, IMAGEBUILD
from goldenimage.kube.client import GOLDENIMAGES, IMAGEBUILDS, JOBS
from support.fakecloud import FakeCloud, FakeCloudAccess
from support.fakekube import Cluster, FakeKube

NS = "platform"
JOB = build_job("web-base-1", "aws-eu", 1)
TARGET = {"name": "aws-eu", "aws": {"region": "eu-west-1", "source": {"amiId": "ami-0123456789abcdef0"}}}


def image() -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "GoldenImage",
        "metadata": {"name": "web-base"},
        "spec": {"targets": [TARGET]},
    }


def build() -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "ImageBuild",
        "metadata": {
            "name": "web-base-1",
            "labels": labels.for_build("web-base", "web-base-1", 1),
            "finalizers": [labels.FINALIZER],
        },
        "spec": {
            "image": "web-base",
            "version": 1,
            "fingerprint": "sha256:" + "ab" * 32,
            "reason": "Initial",
            "recipe": {"targets": [TARGET]},
        },
    }


def cluster(cloud: FakeCloud | None = None) -> Cluster:
    kube = FakeKube()
    return Cluster(kube, FakeCloudAccess(kube, {"aws": cloud or FakeCloud()}))


def event(c: Cluster, kind: str, name: str) -> None:
    asyncio.run(c.op.on_event(kind, "MODIFIED", NS, name))


def ready(obj: dict[str, Any] | None) -> tuple[str, str, str]:
    assert obj is not None
    found = next(x for x in obj["status"]["conditions"] if x["type"] == "Ready")
    return found["status"], found["reason"], found["message"]


@pytest.fixture
def errors(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Log records of reconciles that crashed (the queue logs them and carries on)."""
    caplog.set_level(logging.INFO, logger="goldenimage")
    return caplog


def crashed(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


def test_a_permanent_error_becomes_ready_false_and_a_warning_without_retry(errors: pytest.LogCaptureFixture) -> None:
    c = cluster()
    c.kube.put(build(), NS)
    # A Job of the name the build's first attempt needs, controlled by someone else.
    foreign = {"apiVersion": API_VERSION, "kind": "Other", "name": "other", "uid": "0000-other", "controller": True}
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": JOB, "ownerReferences": [foreign]},
    }
    c.kube.put({**job, "spec": {"template": {}}}, NS)

    event(c, IMAGEBUILD, "web-base-1")

    status, reason, message = ready(c.kube.stored(IMAGEBUILDS, NS, "web-base-1"))
    assert (status, reason) == ("False", "OwnedByAnother")
    assert JOB in message
    assert c.kube.reasons("Warning") == ["OwnedByAnother"]
    assert c.op.triggers == []  # retrying cannot help until something changes
    stays = c.kube.stored(JOBS, NS, JOB)
    assert stays is not None and stays["metadata"]["ownerReferences"] == [foreign]
    assert crashed(errors) == []

    event(c, IMAGEBUILD, "web-base-1")  # the same again: said once
    assert c.kube.reasons("Warning") == ["OwnedByAnother"]
    assert len(c.kube.requests_to("PATCH", IMAGEBUILDS.path(NS, "web-base-1", "status"))) == 1


def test_a_retryable_error_schedules_a_retry_and_writes_nothing(errors: pytest.LogCaptureFixture) -> None:
    c = cluster(FakeCloud(errors={"resolve_source": CloudError("RequestLimitExceeded: slow down")}))
    c.kube.put(image(), NS)

    event(c, GOLDENIMAGE, "web-base")

    assert c.op.triggered(GOLDENIMAGE, "web-base") == [CLOUD_RETRY_SECONDS]
    assert c.kube.writes == []
    assert c.kube.events == []
    assert crashed(errors) == []


def test_an_object_gone_mid_reconcile_ends_quietly(errors: pytest.LogCaptureFixture) -> None:
    c = cluster()
    c.kube.put(image(), NS)
    c.kube.before_next(
        "PATCH", GOLDENIMAGES.path(NS, "web-base", "status"), lambda: c.kube.remove(GOLDENIMAGES, NS, "web-base")
    )

    event(c, GOLDENIMAGE, "web-base")

    assert c.op.triggers == []
    assert c.kube.events == []
    # Nothing is reported on an object that is not there: the write that found it gone was the last.
    assert c.kube.requests[-1].verb == "PATCH"
    assert crashed(errors) == []


def touch(c: Cluster, n: int) -> Callable[[], object]:
    """Another writer's change to the image (its n-th)."""
    return lambda: c.kube.change(GOLDENIMAGES, NS, "web-base", {"metadata": {"annotations": {"touched": str(n)}}})


def test_a_status_write_that_keeps_conflicting_gives_up_until_the_next_event(errors: pytest.LogCaptureFixture) -> None:
    c = cluster()
    c.kube.put(image(), NS)
    path = GOLDENIMAGES.path(NS, "web-base", "status")
    for n in range(CONFLICT_RETRIES):
        c.kube.before_next("PATCH", path, touch(c, n))

    event(c, GOLDENIMAGE, "web-base")

    assert len(c.kube.requests_to("PATCH", path)) == CONFLICT_RETRIES
    found = c.kube.stored(GOLDENIMAGES, NS, "web-base")
    assert found is not None and "status" not in found
    # The later passes found the build the first one created and made no other.
    assert [b["metadata"]["name"] for b in c.kube.stored_all(IMAGEBUILDS)] == ["web-base-1"]
    assert c.op.triggers == []
    assert any("kept changing" in r.getMessage() for r in errors.records)
    assert crashed(errors) == []


def test_a_deleted_object_is_forgotten_by_the_resync(errors: pytest.LogCaptureFixture) -> None:
    c = cluster()
    c.kube.put(image(), NS)
    event(c, GOLDENIMAGE, "web-base")
    assert c.op.known[GOLDENIMAGE] == {(NS, "web-base")}

    asyncio.run(c.op.on_event(GOLDENIMAGE, "DELETED", NS, "web-base"))

    assert c.op.known[GOLDENIMAGE] == set()
    assert crashed(errors) == []


def test_a_job_of_the_same_owner_that_is_another_job_is_not_adopted() -> None:
    c = cluster()
    stored = c.kube.put(build(), NS)
    owner = {
        "apiVersion": API_VERSION,
        "kind": "ImageBuild",
        "name": "web-base-1",
        "uid": stored["metadata"]["uid"],
        "controller": True,
    }
    # The build's own, but the Job of another target: taking it would take its result too.
    other = labels.for_job("web-base", "web-base-1", 1, "aws-us", 1, labels.ROLE_BUILD)
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": JOB, "labels": other, "ownerReferences": [owner]},
    }
    c.kube.put({**job, "spec": {"template": {}}}, NS)

    event(c, IMAGEBUILD, "web-base-1")

    status, reason, message = ready(c.kube.stored(IMAGEBUILDS, NS, "web-base-1"))
    assert (status, reason) == ("False", "OwnedByAnother")
    assert JOB in message and labels.TARGET in message
    assert c.op.triggers == []
