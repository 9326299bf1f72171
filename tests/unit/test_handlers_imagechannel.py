"""The ImageChannel handler on a fake cluster and cloud: a promotion is a conditional write and
publication follows it; what publication did comes back into the next reconcile's Published
condition."""

from __future__ import annotations

import asyncio
from typing import Any

from goldenimage.api.errors import CloudError, CloudRefusedError
from goldenimage.api.group import API_VERSION
from goldenimage.clouds.base import Pointer, PublishScope
from goldenimage.config import Config
from goldenimage.handlers import imagechannels
from goldenimage.handlers.context import IMAGECHANNEL
from goldenimage.kube.client import CONFIGMAPS, IMAGECHANNELS
from goldenimage.kube.execute import PUBLISH_RETRY
from support.fakecloud import FakeCloud, FakeCloudAccess
from support.fakekube import Cluster, FakeKube, Request, owned_by

NS = "platform"
CHANNEL = "web-candidate"
STATUS = IMAGECHANNELS.path(NS, CHANNEL, "status")
VALIDATED_AT = "2026-11-21T10:00:00Z"
PUBLISH = {"aws": {"ssmParameter": "/golden/web-base/candidate"}}


def validated(version: int) -> dict[str, Any]:
    """Version `version` of web-base, built in eu-west-1 and us-east-1 and validated."""
    artifacts = [{"region": "eu-west-1", "id": f"ami-eu{version}"}, {"region": "us-east-1", "id": f"ami-us{version}"}]
    target = {
        "name": "aws-eu",
        "aws": {"region": "eu-west-1", "copyToRegions": ["us-east-1"], "source": {"amiId": "ami-0123456789abcdef0"}},
    }
    condition = {"type": "Validated", "status": "True", "reason": "Validated", "lastTransitionTime": VALIDATED_AT}
    return {
        "apiVersion": API_VERSION,
        "kind": "ImageBuild",
        "metadata": {"name": f"web-base-{version}"},
        "spec": {
            "image": "web-base",
            "version": version,
            "fingerprint": "sha256:" + f"{version:02d}" * 32,
            "reason": "Initial",
            "recipe": {"targets": [target]},
        },
        "status": {
            "targets": [{"name": "aws-eu", "cloud": "aws", "phase": "Succeeded", "attempt": 1, "artifacts": artifacts}],
            "conditions": [condition],
        },
    }


def channel(publish: dict[str, Any] | None = PUBLISH, status: dict[str, Any] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"image": "web-base", "source": {"latestValidated": {}}}
    if publish is not None:
        spec["publish"] = publish
    return {
        "apiVersion": API_VERSION,
        "kind": "ImageChannel",
        "metadata": {"name": CHANNEL},
        "spec": spec,
        **({"status": status} if status else {}),
    }


def cluster(
    *versions: int, body: dict[str, Any] | None = None, image: bool = True
) -> tuple[Cluster, FakeCloud, dict[str, Any]]:
    kube = FakeKube()
    cloud = FakeCloud()
    c = Cluster(kube, FakeCloudAccess(kube, {"aws": cloud}))
    if image:
        kube.put(image_declaring(), NS)
    for version in versions:
        kube.put(validated(version), NS)
    return c, cloud, kube.put(body or channel(), NS)


def reconcile(c: Cluster) -> list[Request]:
    before = len(c.kube.requests)
    asyncio.run(imagechannels.reconcile(c.op, NS, CHANNEL))
    return c.kube.requests[before:]


def status(c: Cluster) -> dict[str, Any]:
    found = c.kube.stored(IMAGECHANNELS, NS, CHANNEL)
    assert found is not None
    result: dict[str, Any] = found["status"]
    return result


def condition(c: Cluster, type_: str) -> dict[str, Any] | None:
    return next((x for x in status(c)["conditions"] if x["type"] == type_), None)


def test_a_promotion_is_a_conditional_write_and_publication_follows_it() -> None:
    c, cloud, body = cluster(1)
    at_publish: list[Any] = []
    cloud.hooks["publish"] = lambda: at_publish.append(status(c).get("current", {}).get("version"))

    done = reconcile(c)

    current = status(c)["current"]
    assert (current["version"], current["build"], current["reason"]) == (1, "web-base-1", "LatestValidated")
    write = next(r for r in done if r.path == STATUS)
    assert write.body["metadata"] == {"resourceVersion": body["metadata"]["resourceVersion"]}
    ready = condition(c, "Ready")
    assert ready is not None and (ready["status"], ready["reason"]) == ("True", "Promoted")
    published = condition(c, "Published")
    assert published is not None and (published["status"], published["reason"]) == ("False", "Publishing")
    # Published only once the move is on record.
    assert at_publish == [1]
    ((scope, section, now_at, before),) = cloud.calls_to("publish")
    # The channel's UID goes with it: the cloud records it on what publication creates.
    assert scope == PublishScope(namespace=NS, image="web-base", channel=CHANNEL, uid=body["metadata"]["uid"])
    assert section.model_dump(by_alias=True, exclude_none=True) == PUBLISH["aws"]
    assert now_at == (Pointer("aws-eu", "eu-west-1", "ami-eu1"), Pointer("aws-eu", "us-east-1", "ami-us1"))
    assert before == ()
    assert c.kube.reasons() == ["Promoted"]
    # Look again at once, to record what publication did.
    assert c.op.triggered(IMAGECHANNEL, CHANNEL) == [0.0]


def test_the_next_reconcile_records_the_publication_as_published() -> None:
    c, cloud, _ = cluster(1)
    reconcile(c)

    done = reconcile(c)

    published = condition(c, "Published")
    assert published is not None
    assert (published["status"], published["reason"], published["message"]) == ("True", "Published", "published to aws")
    assert len(cloud.calls_to("publish")) == 1  # not written again while it is fresh
    assert [r.body["status"].keys() for r in done if r.path == STATUS] == [{"conditions"}]
    assert status(c)["current"]["version"] == 1


def test_a_failed_publication_says_what_the_cloud_said_and_is_retried_later() -> None:
    c, cloud, _ = cluster(1)
    cloud.publish_error = CloudError("AccessDenied: not authorized to perform ssm:PutParameter")
    reconcile(c)
    assert c.op.triggered(IMAGECHANNEL, CHANNEL) == [PUBLISH_RETRY]

    reconcile(c)

    published = condition(c, "Published")
    assert published is not None
    assert (published["status"], published["reason"]) == ("False", "PublishFailed")
    assert "AccessDenied: not authorized to perform ssm:PutParameter" in published["message"]
    assert len(cloud.calls_to("publish")) == 2  # tried again, spaced by the executor
    assert c.op.triggered(IMAGECHANNEL, CHANNEL)[-1] == PUBLISH_RETRY
    assert status(c)["current"]["version"] == 1  # a failed publication never moves the pointer back

    cloud.publish_error = None
    reconcile(c)
    reconcile(c)
    published = condition(c, "Published")
    assert published is not None and published["status"] == "True"


def test_a_publication_the_cloud_refuses_is_a_condition_not_a_failed_reconcile() -> None:
    c, cloud, _ = cluster(1)
    cloud.publish_error = CloudRefusedError("ParameterNotFound: /golden is owned by another account")
    reconcile(c)
    # The promotion stands; the refusal is recorded at the next pass, spaced like any failure.
    assert status(c)["current"]["version"] == 1
    assert c.op.triggered(IMAGECHANNEL, CHANNEL) == [PUBLISH_RETRY]

    reconcile(c)

    published = condition(c, "Published")
    assert published is not None
    assert (published["status"], published["reason"]) == ("False", "PublishFailed")
    assert "owned by another account" in published["message"]


def test_a_parameter_outside_the_platforms_prefix_is_refused_without_calling_the_cloud() -> None:
    kube, cloud = FakeKube(), FakeCloud()
    config = Config(ssm_parameter_prefix="/{namespace}/")
    c = Cluster(kube, FakeCloudAccess(kube, {"aws": cloud}), config=config)
    kube.put(validated(1), NS)
    kube.put(channel({"aws": {"ssmParameter": "/team-b/web"}}), NS)
    reconcile(c)

    assert status(c)["current"]["version"] == 1  # the pointer moves; only publication is refused
    published = condition(c, "Published")
    assert published is not None
    assert (published["status"], published["reason"]) == ("False", "PublishFailed")
    assert published["message"] == (
        f"aws: SSM parameter /team-b/web is outside /{NS}/, where namespace {NS} may publish: "
        f"choose a path beneath /{NS}/"
    )
    assert cloud.calls_to("publish") == []


def test_a_channel_that_publishes_nothing_has_no_published_condition() -> None:
    stale = {"type": "Published", "status": "True", "reason": "Published", "lastTransitionTime": VALIDATED_AT}
    c, cloud, _ = cluster(1, body=channel(publish=None, status={"conditions": [stale]}))

    reconcile(c)

    assert status(c)["current"]["version"] == 1
    assert condition(c, "Published") is None
    assert cloud.calls == []


def test_of_two_concurrent_moves_one_wins_and_the_other_plans_again() -> None:
    c, _, _ = cluster(1, 2)
    entry = {"promotedAt": "2026-11-21T10:00:00Z", "reason": "LatestValidated", "artifacts": []}
    first = {**entry, "version": 1, "build": "web-base-1"}
    c.kube.change(IMAGECHANNELS, NS, CHANNEL, {"status": {"current": first}})
    # Another replica moves the channel to version 2 between this reconcile's read and write.
    theirs = {**entry, "version": 2, "build": "web-base-2", "message": "moved by the other replica"}
    c.kube.before_next(
        "PATCH",
        STATUS,
        lambda: c.kube.change(IMAGECHANNELS, NS, CHANNEL, {"status": {"current": theirs, "history": [first]}}),
    )

    asyncio.run(c.op.on_event(IMAGECHANNEL, "MODIFIED", NS, CHANNEL))

    assert len(c.kube.requests_to("PATCH", STATUS)) == 2
    assert status(c)["current"]["message"] == "moved by the other replica"
    assert [e["version"] for e in status(c)["history"]] == [1]
    assert "Promoted" not in c.kube.reasons()


def test_the_config_map_is_the_channels_own_and_never_taken_over() -> None:
    c, _, body = cluster(1, body=channel({"configMap": {"name": "web-base-candidate"}}))

    reconcile(c)
    reconcile(c)

    written = c.kube.stored(CONFIGMAPS, NS, "web-base-candidate")
    assert written is not None
    assert owned_by(written) == [body["metadata"]["uid"]]
    assert (written["data"]["version"], written["data"]["aws-eu.us-east-1"]) == ("1", "ami-us1")
    published = condition(c, "Published")
    assert published is not None and published["status"] == "True"

    taken = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "taken"}, "data": {"a": "b"}}
    c, _, _ = cluster(1, body=channel({"configMap": {"name": "taken"}}))
    c.kube.put(taken, NS)
    reconcile(c)
    reconcile(c)

    kept = c.kube.stored(CONFIGMAPS, NS, "taken")
    assert kept is not None
    assert (kept["data"], owned_by(kept)) == ({"a": "b"}, [])
    published = condition(c, "Published")
    assert published is not None and published["reason"] == "PublishFailed"
    assert "is not this channel's" in published["message"]


def test_channels_that_follow_one_another_are_reported_as_a_cycle() -> None:
    follows = {"image": "web-base", "source": {"channel": "web-prod"}}
    c, _, _ = cluster(1, body=channel() | {"spec": follows})
    prod = channel() | {"metadata": {"name": "web-prod"}, "spec": follows | {"source": {"channel": CHANNEL}}}
    c.kube.put(prod, NS)

    reconcile(c)

    ready = condition(c, "Ready")
    assert ready is not None and (ready["status"], ready["reason"]) == ("False", "UpstreamCycle")
    assert f"{CHANNEL} -> web-prod -> {CHANNEL}" in ready["message"]


def test_a_pinned_channel_breaks_the_loop_it_would_close() -> None:
    follows = {"image": "web-base", "source": {"channel": "web-prod"}}
    c, _, _ = cluster(1, body=channel() | {"spec": follows})
    pinned = {"image": "web-base", "source": {"channel": CHANNEL}, "version": 1}
    c.kube.put(channel() | {"metadata": {"name": "web-prod"}, "spec": pinned}, NS)

    reconcile(c)

    ready = condition(c, "Ready")
    assert ready is not None and ready["reason"] != "UpstreamCycle", ready


def image_declaring(*revoked: int) -> dict[str, Any]:
    """web-base, declaring versions revoked its builds do not say yet."""
    target = {"name": "aws-eu", "aws": {"region": "eu-west-1", "source": {"amiId": "ami-0123456789abcdef0"}}}
    revocations = [{"version": v, "reason": "CVE-2026-1234"} for v in revoked]
    return {
        "apiVersion": API_VERSION,
        "kind": "GoldenImage",
        "metadata": {"name": "web-base"},
        "spec": {"targets": [target], "revocations": revocations},
    }


def test_a_version_the_image_declares_revoked_is_never_taken_before_its_build_says_so() -> None:
    c, cloud, _ = cluster(1, 2)
    c.kube.put(image_declaring(2), NS)

    reconcile(c)

    assert status(c)["current"]["version"] == 1
    ((_, _, pointers, _),) = cloud.calls_to("publish")
    assert {p.image for p in pointers} == {"ami-eu1", "ami-us1"}


def test_a_channel_on_a_version_declared_revoked_falls_back_at_once() -> None:
    c, _, _ = cluster(1)
    reconcile(c)
    c.kube.put(validated(2), NS)
    reconcile(c)
    assert status(c)["current"]["version"] == 2
    c.kube.put(image_declaring(2), NS)

    reconcile(c)

    current = status(c)["current"]
    assert (current["version"], current["reason"]) == (1, "Revoked")
    assert "CVE-2026-1234" in current["message"]


def test_a_channel_of_an_image_that_does_not_exist_says_so() -> None:
    c, cloud, _ = cluster(image=False)
    reconcile(c)
    ready = condition(c, "Ready")
    assert ready is not None and (ready["status"], ready["reason"]) == ("False", "ImageNotFound")
    assert ready["message"] == "GoldenImage web-base does not exist"
    assert cloud.calls == []
    c.kube.put(image_declaring(), NS)
    reconcile(c)
    ready = condition(c, "Ready")
    assert ready is not None and ready["reason"] == "NoValidatedVersion"
