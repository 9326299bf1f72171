"""The GoldenImage handler on a fake cluster and cloud: what one reconcile creates, writes and
says, and what it leaves alone."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

from goldenimage.api import labels
from goldenimage.api.errors import SourceNotFoundError
from goldenimage.api.group import API_VERSION
from goldenimage.handlers import goldenimages
from goldenimage.handlers.context import GOLDENIMAGE
from goldenimage.kube.client import GOLDENIMAGES, IMAGEBUILDS
from support.fakecloud import FakeCloud, FakeCloudAccess
from support.fakekube import Cluster, FakeKube, Request, has_finalizer, names, owned_by

NS = "platform"
AMI = "ami-0aaaaaaaaaaaaaaaa"
STATUS = GOLDENIMAGES.path(NS, "web-base", "status")


def image(**spec: Any) -> dict[str, Any]:
    target = {
        "name": "aws-eu",
        "aws": {"region": "eu-west-1", "source": {"amiFilter": {"name": "debian-12-*", "owners": ["136693071363"]}}},
    }
    return {
        "apiVersion": API_VERSION,
        "kind": "GoldenImage",
        "metadata": {"name": "web-base"},
        "spec": {"targets": [target], **spec},
    }


def cluster(cloud: FakeCloud | None = None) -> tuple[Cluster, FakeCloud, FakeCloudAccess]:
    kube = FakeKube()
    cloud = cloud or FakeCloud(sources={"aws-eu": AMI})
    access = FakeCloudAccess(kube, {"aws": cloud})
    return Cluster(kube, access), cloud, access


def finish(c: Cluster, name: str) -> None:
    """The build is done (here: its one target failed for good), so a next version may start."""
    target = {"name": "aws-eu", "cloud": "aws", "phase": "Failed", "attempt": 1}
    c.kube.change(IMAGEBUILDS, NS, name, {"status": {"targets": [target]}})


def reconcile(c: Cluster) -> list[Request]:
    """Reconcile web-base once; the requests it made."""
    before = len(c.kube.requests)
    asyncio.run(goldenimages.reconcile(c.op, NS, "web-base"))
    return c.kube.requests[before:]


def status(c: Cluster) -> dict[str, Any]:
    found = c.kube.stored(GOLDENIMAGES, NS, "web-base")
    assert found is not None
    result: dict[str, Any] = found.get("status") or {}
    return result


def ready(c: Cluster) -> dict[str, Any]:
    return next(x for x in status(c)["conditions"] if x["type"] == "Ready")


def verbs(requests: list[Request]) -> list[tuple[str, str]]:
    return [(r.verb, r.path) for r in requests]


def test_the_first_reconcile_creates_version_1_finalized_owned_and_labelled() -> None:
    c, cloud, _ = cluster()
    applied = c.kube.put(image(), NS)

    done = reconcile(c)

    build = c.kube.stored(IMAGEBUILDS, NS, "web-base-1")
    assert build is not None
    assert has_finalizer(build)
    assert owned_by(build) == [applied["metadata"]["uid"]]
    # The image must be deletable while a build's own clean-up still holds that build.
    assert build["metadata"]["ownerReferences"][0]["blockOwnerDeletion"] is False
    assert build["metadata"]["labels"] == labels.for_build("web-base", "web-base-1", 1)
    assert build["metadata"]["annotations"] == {labels.DELETION_POLICY: "Retain"}
    assert build["spec"]["version"] == 1
    assert build["spec"]["reason"] == "Initial"
    assert build["spec"]["sources"] == {"aws-eu": AMI}
    assert cloud.calls_to("resolve_source") == [("aws-eu",)]

    written = status(c)
    assert (written["latestVersion"], written["latestBuild"]) == (1, "web-base-1")
    assert written["fingerprint"] == build["spec"]["fingerprint"]
    assert written["sources"] == {"aws-eu": AMI}
    assert (ready(c)["status"], ready(c)["reason"]) == ("False", "Building")
    # One create, one status write conditional on what the plan was made from, then the Event.
    assert verbs(done) == [
        ("GET", GOLDENIMAGES.path(NS, "web-base")),
        ("POST", IMAGEBUILDS.path(NS)),
        ("PATCH", STATUS),
        ("POST", f"/api/v1/namespaces/{NS}/events"),
    ]
    assert done[2].body["metadata"] == {"resourceVersion": applied["metadata"]["resourceVersion"]}
    assert c.kube.reasons() == ["VersionCreated"]


def test_reconciling_again_with_the_build_in_the_cache_creates_and_writes_nothing() -> None:
    c, _, _ = cluster()
    c.kube.put(image(), NS)
    reconcile(c)

    again = reconcile(c)
    # At most the status catches up with the build (its creation time, its Ready message) ...
    assert [(r.verb, r.path) for r in again if r.verb != "GET"] in ([], [("PATCH", STATUS)])
    # ... and from then on a reconcile only reads.
    assert verbs(reconcile(c)) == [("GET", GOLDENIMAGES.path(NS, "web-base"))]
    assert names(c.kube.stored_all(IMAGEBUILDS)) == ["web-base-1"]
    assert c.kube.reasons() == ["VersionCreated"]


def test_a_source_that_matches_nothing_blocks_with_source_not_found() -> None:
    cloud = FakeCloud(source_errors={"aws-eu": SourceNotFoundError("no AMI matches debian-12-*")})
    c, _, _ = cluster(cloud)
    c.kube.put(image(), NS)

    reconcile(c)

    assert c.kube.stored_all(IMAGEBUILDS) == []
    assert (ready(c)["status"], ready(c)["reason"]) == ("False", "SourceNotFound")
    assert ready(c)["message"] == "aws-eu: no AMI matches debian-12-*"
    assert "latestVersion" not in status(c)


def test_a_missing_credentials_secret_creates_no_build_and_borrows_no_identity() -> None:
    c, cloud, access = cluster()
    c.kube.put(image(credentials={"aws": {"secretRef": {"name": "aws-keys"}}}), NS)

    reconcile(c)

    assert c.kube.stored_all(IMAGEBUILDS) == []
    assert (ready(c)["status"], ready(c)["reason"]) == ("False", "MissingCredentials")
    assert f"{NS}/aws-keys does not exist" in ready(c)["message"]
    # The operator's own identity would see another account: the source is not resolved at all.
    assert access.asked == []
    assert cloud.calls == []

    key = base64.b64encode(b"AKIAEXAMPLE").decode()
    c.kube.put({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "aws-keys"}, "data": {"KEY": key}}, NS)
    reconcile(c)

    assert names(c.kube.stored_all(IMAGEBUILDS)) == ["web-base-1"]
    assert access.asked == [("aws", {"KEY": "AKIAEXAMPLE"})]


def test_a_spec_the_models_refuse_is_reported_invalid_once() -> None:
    c, cloud, _ = cluster()
    # The API server's schema admits it; minute 61 is caught only by the models.
    c.kube.put(image(rebuild={"schedule": "61 * * * *"}), NS)

    reconcile(c)

    assert (ready(c)["status"], ready(c)["reason"]) == ("False", "InvalidSpec")
    assert "61 is outside 0-59" in ready(c)["message"]
    assert c.kube.reasons("Warning") == ["InvalidSpec"]
    assert c.kube.stored_all(IMAGEBUILDS) == []
    assert cloud.calls == []

    assert verbs(reconcile(c)) == [("GET", GOLDENIMAGES.path(NS, "web-base"))]
    assert c.kube.reasons() == ["InvalidSpec"]


def test_a_new_deletion_policy_is_annotated_on_builds_without_a_new_version() -> None:
    c, _, _ = cluster()
    c.kube.put(image(), NS)
    reconcile(c)
    c.kube.change(IMAGEBUILDS, NS, "web-base-1", {"metadata": {"annotations": {"team/note": "keep"}}})
    c.kube.put(image(retention={"deletionPolicy": "Delete"}), NS)

    done = reconcile(c)

    patch = next(r for r in done if r.path == IMAGEBUILDS.path(NS, "web-base-1"))
    assert patch.body == {"metadata": {"annotations": {labels.DELETION_POLICY: "Delete"}}}
    build = c.kube.stored(IMAGEBUILDS, NS, "web-base-1")
    assert build is not None
    # A merge patch: annotations of others stay.
    assert build["metadata"]["annotations"] == {labels.DELETION_POLICY: "Delete", "team/note": "keep"}
    assert names(c.kube.stored_all(IMAGEBUILDS)) == ["web-base-1"]


def test_a_rebuild_token_makes_one_version_per_token() -> None:
    c, _, _ = cluster()
    c.kube.put(image(), NS)
    reconcile(c)
    requested = image()
    requested["metadata"]["annotations"] = {labels.REBUILD: "t1"}
    c.kube.put(requested, NS)

    # While version 1 is at work, the request waits for it.
    reconcile(c)
    assert names(c.kube.stored_all(IMAGEBUILDS)) == ["web-base-1"]
    assert (ready(c)["reason"], ready(c)["message"]) == (
        "Building",
        "version 1 is still at work; a new version (RebuildRequested) starts after it",
    )
    finish(c, "web-base-1")
    reconcile(c)
    reconcile(c)

    assert names(c.kube.stored_all(IMAGEBUILDS)) == ["web-base-1", "web-base-2"]
    second = c.kube.stored(IMAGEBUILDS, NS, "web-base-2")
    assert second is not None
    assert second["spec"]["reason"] == "RebuildRequested"
    assert second["metadata"]["annotations"][labels.REBUILD_TOKEN] == "t1"
    assert status(c)["handledRebuildToken"] == "t1"


def test_a_watch_cache_one_write_behind_never_duplicates_the_first_version() -> None:
    c, _, _ = cluster()
    c.kube.put(image(), NS)
    c.cache.hold()  # the ImageBuild watch has not delivered web-base-1 yet

    async def events() -> None:
        await c.op.on_event(GOLDENIMAGE, "ADDED", NS, "web-base")
        # The event of the status write the first reconcile made.
        await c.op.on_event(GOLDENIMAGE, "MODIFIED", NS, "web-base")

    asyncio.run(events())

    assert names(c.kube.stored_all(IMAGEBUILDS)) == ["web-base-1"]


def test_a_latest_build_that_is_really_gone_is_replaced_by_the_next_version_never_the_same() -> None:
    c, _, _ = cluster()
    c.kube.put(image(), NS)
    reconcile(c)
    c.kube.remove(IMAGEBUILDS, NS, "web-base-1")  # say, deleted by hand, finalizer and all

    done = reconcile(c)

    # The status names web-base-1 and the cache does not have it: the API server is asked.
    assert ("GET", IMAGEBUILDS.path(NS, "web-base-1")) in verbs(done)
    assert names(c.kube.stored_all(IMAGEBUILDS)) == ["web-base-2"]
    assert (status(c)["latestVersion"], status(c)["latestBuild"]) == (2, "web-base-2")


def test_versions_never_restart_when_every_build_goes_while_the_image_is_blocked() -> None:
    c, cloud, _ = cluster()
    c.kube.put(image(), NS)
    reconcile(c)
    cloud.source_errors["aws-eu"] = SourceNotFoundError("no AMI matches debian-12-*")
    c.kube.remove(IMAGEBUILDS, NS, "web-base-1")

    reconcile(c)

    assert (ready(c)["status"], ready(c)["reason"]) == ("False", "SourceNotFound")
    assert status(c)["latestVersion"] == 1
    assert "latestBuild" not in status(c)

    del cloud.source_errors["aws-eu"]
    reconcile(c)

    assert names(c.kube.stored_all(IMAGEBUILDS)) == ["web-base-2"]


REVOKED_2 = [{"version": 2, "reason": "CVE-2026-1234"}]


def test_a_declared_revocation_is_the_plugins_patch_conditional_on_the_build() -> None:
    c, _, _ = cluster()
    c.kube.put(image(), NS)
    reconcile(c)
    finish(c, "web-base-1")
    c.kube.put({**image(), "metadata": {"name": "web-base", "annotations": {labels.REBUILD: "t1"}}}, NS)
    reconcile(c)
    second = c.kube.stored(IMAGEBUILDS, NS, "web-base-2")
    assert second is not None
    c.kube.put(
        {**image(revocations=REVOKED_2), "metadata": {"name": "web-base", "annotations": {labels.REBUILD: "t1"}}}, NS
    )

    done = reconcile(c)

    (patch,) = [r for r in done if r.verb == "PATCH" and r.path == IMAGEBUILDS.path(NS, "web-base-2")]
    assert patch.body["metadata"] == {"resourceVersion": second["metadata"]["resourceVersion"]}
    assert set(patch.body["spec"]) == {"revoked"}
    revoked = c.kube.stored(IMAGEBUILDS, NS, "web-base-2")
    assert revoked is not None
    assert revoked["spec"]["revoked"]["reason"] == "CVE-2026-1234"
    assert revoked["spec"]["revoked"]["revokedBy"] == "goldenimage/web-base"
    assert revoked["spec"]["revoked"]["revokedAt"].endswith("Z")
    # No new version: a revocation is not a recipe change.
    assert names(c.kube.stored_all(IMAGEBUILDS)) == ["web-base-1", "web-base-2"]
    assert "VersionRevoked" in c.kube.reasons()
    condition = next(x for x in status(c)["conditions"] if x["type"] == "Revocations")
    assert (condition["status"], condition["message"]) == ("True", "version 2 revoked")

    # Level-based and idempotent: the next reconcile patches no build.
    assert [r for r in reconcile(c) if r.path.startswith(IMAGEBUILDS.path(NS))] == []
