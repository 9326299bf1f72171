"""Validation and channels end to end: boot tests of real machines booted from the built AMIs
(TCP, HTTP and SSM commands run for real), a candidate channel that takes validated builds, a
prod channel that follows it after a soak, publication to SSM parameters, tags and a ConfigMap,
`kubectl golden` rollback, and revocation."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import pytest

from goldenimage.api import labels
from goldenimage.clouds.aws.adapter import AwsApi
from goldenimage_dev.stack import Stack
from support import polling
from support.builds import pointer, wait_built, wait_ready, wait_version
from support.cluster import Cluster, condition_of
from support.ec2 import running_instances
from support.manifests import golden_image, image_channel
from support.namespaces import make_namespace

pytestmark = pytest.mark.e2e

REGIONS = ("eu-west-1", "us-east-1")


# A small web service baked into the image: what the checks find when it boots.
WEB_UNIT = (
    "[Unit]\nDescription=the app\n[Service]\n"
    "ExecStart=/usr/bin/python3 -m http.server 8080 --directory /srv/www\n"
    "[Install]\nWantedBy=multi-user.target\n"
)
SERVE = [
    "sudo mkdir -p /srv/www",
    "echo ok | sudo tee /srv/www/health",
    f"printf '{WEB_UNIT}' | sudo tee /etc/systemd/system/goldenimage-web.service",
    "sudo systemctl enable goldenimage-web",
]


def app(name: str, checks: list[dict[str, Any]]) -> dict[str, Any]:
    return golden_image(
        name,
        target={
            "region": "eu-west-1",
            "copyToRegions": ["us-east-1"],
            "source": {"amiFilter": {"name": "debian-12-amd64-*", "owners": ["136693071363"]}},
        },
        provisioners=[{"shell": {"inline": SERVE}}],
        tags={"App": name},
        validation={
            "timeout": "5m",
            "aws": {"subnetSelector": {"tags": {"Purpose": "image-validation"}}},
            "checks": checks,
        },
    )


GOOD_CHECKS = [
    {"tcp": {"port": 22}},
    {"http": {"port": 8080, "path": "/health", "contains": "ok"}},
    {"name": "service", "command": {"run": "systemctl is-active goldenimage-web"}},
]


def channels(image: str) -> list[dict[str, Any]]:
    def channel(name: str, source: dict[str, Any]) -> dict[str, Any]:
        publish = {
            "aws": {"ssmParameter": f"/golden/{image}/{name}", "tag": {"key": f"channel/{name}", "value": "current"}},
            "configMap": {"name": f"{image}-{name}"},
        }
        return image_channel(name, image, source, publish=publish)

    return [channel("candidate", {"latestValidated": {}}), channel("prod", {"channel": "candidate", "minSoak": "3s"})]


def amis(cluster: Cluster, ns: str, build: str) -> dict[str, str]:
    status = cluster.get("imagebuild", build, "-n", ns)["status"]
    return {a["region"]: a["id"] for t in status["targets"] for a in t["artifacts"]}


def ssm(aws: AwsApi, region: str, name: str) -> dict[str, Any]:
    parameter: dict[str, Any] = aws.client("ssm", region).get_parameter(Name=name)["Parameter"]
    return parameter


def tagged(aws: AwsApi, region: str, key: str) -> list[str]:
    found = aws.ec2(region).describe_images(Owners=["self"], Filters=[{"Name": f"tag:{key}", "Values": ["current"]}])
    return sorted(i["ImageId"] for i in found["Images"])


def validation_instances(aws: AwsApi, image: str) -> list[str]:
    return running_instances(aws, REGIONS, {labels.IMAGE: image, labels.ROLE: "validation"})


def assert_published(cluster: Cluster, aws: AwsApi, ns: str, channel: str, build: str) -> None:
    expected = amis(cluster, ns, build)
    for region in REGIONS:

        def parameter(region: str = region) -> dict[str, Any] | None:
            found = ssm(aws, region, f"/golden/app/{channel}")
            return found if found["Value"] == expected[region] else None

        def only_current_is_tagged(region: str = region) -> bool:
            return tagged(aws, region, f"channel/{channel}") == [expected[region]]

        found = polling.until(parameter, what=f"/golden/app/{channel} in {region} to be {expected[region]}")
        assert found["DataType"] == "aws:ec2:image"
        polling.until(only_current_is_tagged, what=f"exactly one AMI tagged channel/{channel} in {region}")

    def config_map() -> dict[str, Any] | None:
        found: dict[str, Any] = cluster.get("configmap", f"app-{channel}", "-n", ns)
        return found if found["data"].get("build") == build else None

    published = polling.until(config_map, what=f"ConfigMap app-{channel}")
    assert json.loads(published["data"]["artifacts.json"])[0]["id"] in expected.values()
    assert published["data"]["aws.eu-west-1"] == expected["eu-west-1"]


def test_validate_promote_roll_back_and_revoke(stack: Stack, cluster: Cluster, ns: str, aws: AwsApi) -> None:
    cluster.apply([app("app", GOOD_CHECKS), *channels("app")], ns)

    # Version 1: built, booted in both regions, every check passed; no instance left running.
    def validated() -> dict[str, Any] | None:
        build = cluster.get_or_none("imagebuild", "app-1", ns)
        ready = condition_of(build, "Ready")
        return build if ready and ready["status"] == "True" else None

    build = polling.until(validated, timeout=600, what="app-1 to be validated")
    results = {v["region"]: v for v in build["status"]["validation"]}
    assert set(results) == set(REGIONS)
    for region in REGIONS:
        assert results[region]["phase"] == "Passed"
        checks = results[region]["checks"]
        assert [c["name"] for c in checks] == ["tcp-22", "http-8080", "service"]
        assert all(c["passed"] for c in checks)
        # Real machines on the lab network answered: the booted image serves what it baked.
        prefix = str(stack.clouds.lab.network.network_address).rsplit(".", 2)[0]  # 10.250
        assert checks[0]["message"].startswith(f"connected to {prefix}."), checks
        assert checks[2]["message"].endswith("exited 0: active"), checks
    polling.until(lambda: validation_instances(aws, "app") == [], what="validation instances to terminate")

    # Candidate takes it on validation; prod after its soak; both published.
    assert wait_version(cluster, ns, "candidate", 1) == "LatestValidated"
    assert wait_version(cluster, ns, "prod", 1) == "UpstreamChannel"
    promoted = {
        name: datetime.fromisoformat(cluster.get("imagechannel", name, "-n", ns)["status"]["current"]["promotedAt"])
        for name in ("candidate", "prod")
    }
    assert promoted["prod"] - promoted["candidate"] >= timedelta(seconds=3), promoted  # prod's minSoak
    assert_published(cluster, aws, ns, "prod", "app-1")
    assert_published(cluster, aws, ns, "candidate", "app-1")
    polling.until(
        lambda: cluster.get("goldenimage", "app", "-n", ns)["status"].get("latestValidatedVersion") == 1,
        what="the GoldenImage to report version 1 as the latest validated",
    )

    # Version 2, by request: candidate, then prod, move on.
    assert cluster.golden(ns, "rebuild", "app").returncode == 0
    wait_version(cluster, ns, "candidate", 2, timeout=600)
    wait_version(cluster, ns, "prod", 2)
    assert_published(cluster, aws, ns, "prod", "app-2")

    # Roll prod back with the plugin: spec.version pins it to 1, and SSM follows.
    dry = cluster.golden(ns, "rollback", "prod", "--dry-run")
    assert dry.returncode == 0 and '"version": 1' in dry.stdout
    assert cluster.get("imagechannel", "prod", "-n", ns)["spec"].get("version") is None
    rolled = cluster.golden(ns, "rollback", "prod")
    assert rolled.returncode == 0, rolled.stderr
    assert "roll back from version 2 to version 1" in rolled.stdout
    assert wait_version(cluster, ns, "prod", 1) == "Rollback"
    assert_published(cluster, aws, ns, "prod", "app-1")
    history = cluster.golden(ns, "history", "prod").stdout
    assert "Rollback" in history and "UpstreamChannel" in history
    assert pointer(cluster, ns, "candidate")[0] == 2

    # Unpin with the plugin: prod follows candidate to 2 again. Then revoke 2: both channels move off it.
    unpinned = cluster.golden(ns, "unpin", "prod")
    assert unpinned.returncode == 0, unpinned.stderr
    assert "unpinned from version 1; it follows its policy again (channel candidate)" in unpinned.stdout
    assert cluster.get("imagechannel", "prod", "-n", ns)["spec"].get("version") is None
    wait_version(cluster, ns, "prod", 2)
    revoked = cluster.golden(ns, "revoke", "app-2", "--reason", "CVE-2026-1234")
    assert revoked.returncode == 0, revoked.stderr
    assert wait_version(cluster, ns, "candidate", 1) == "Revoked"
    assert wait_version(cluster, ns, "prod", 1) == "Revoked"
    assert_published(cluster, aws, ns, "prod", "app-1")
    assert_published(cluster, aws, ns, "candidate", "app-1")

    def deprecated() -> dict[str, Any] | None:
        build = cluster.get("imagebuild", "app-2", "-n", ns)
        done = condition_of(build, "Deprecated")
        return build if done and done["status"] == "True" else None

    build_2 = polling.until(deprecated, what="app-2 to be deprecated")
    ready = condition_of(build_2, "Ready")
    assert ready and ready["reason"] == "Revoked", ready
    for region, ami in amis(cluster, ns, "app-2").items():
        (found,) = aws.ec2(region).describe_images(ImageIds=[ami])["Images"]
        assert {t["Key"]: t["Value"] for t in found["Tags"]}.get("goldenimage.io/revoked") == "CVE-2026-1234"
    refused = cluster.golden(ns, "promote", "prod", "--version", "2")
    assert refused.returncode == 1 and "is revoked: CVE-2026-1234" in refused.stderr


def test_revocations_declared_on_the_image(stack: Stack, cluster: Cluster, ns: str, aws: AwsApi) -> None:
    """Revocation kept in Git: the GoldenImage lists versions, the operator revokes their builds
    as the plugin would, and the channel moves off them; nothing is rebuilt for it."""

    def image(*revoked: int) -> dict[str, Any]:
        manifest = golden_image(
            "declared",
            target={
                "region": "eu-west-1",
                "source": {"amiFilter": {"name": "debian-12-amd64-*", "owners": ["136693071363"]}},
            },
            validation={
                "aws": {"subnetSelector": {"tags": {"Purpose": "image-validation"}}},
                "checks": [{"tcp": {"port": 22}}],
            },
        )
        manifest["spec"]["revocations"] = [{"version": v, "reason": f"CVE-2026-000{v}"} for v in revoked]
        return manifest

    def revocations() -> dict[str, Any] | None:
        return condition_of(cluster.get("goldenimage", "declared", "-n", ns), "Revocations")

    cluster.apply([image(), image_channel("candidate", "declared")], ns)
    wait_version(cluster, ns, "candidate", 1, timeout=600)
    assert cluster.golden(ns, "rebuild", "declared").returncode == 0
    wait_version(cluster, ns, "candidate", 2, timeout=600)

    # Version 2 declared revoked: its build is revoked by the image, the channel falls back to 1
    # and the AMI is marked, as after `kubectl golden revoke`.
    cluster.apply(image(2), ns)
    assert wait_version(cluster, ns, "candidate", 1) == "Revoked"
    revoked = cluster.get("imagebuild", "declared-2", "-n", ns)["spec"]["revoked"]
    assert (revoked["reason"], revoked["revokedBy"]) == ("CVE-2026-0002", "goldenimage/declared")

    def deprecated() -> dict[str, Any] | None:
        build = cluster.get("imagebuild", "declared-2", "-n", ns)
        done = condition_of(build, "Deprecated")
        return build if done and done["status"] == "True" else None

    build_2 = polling.until(deprecated, what="declared-2 to be deprecated")
    for region, ami in ((a["region"], a["id"]) for t in build_2["status"]["targets"] for a in t["artifacts"]):
        (found,) = aws.ec2(region).describe_images(ImageIds=[ami])["Images"]
        assert {t["Key"]: t["Value"] for t in found["Tags"]}.get("goldenimage.io/revoked") == "CVE-2026-0002"
    applied = polling.until(
        lambda: (c := revocations()) and c["status"] == "True" and c, what="the Revocations condition"
    )
    assert applied["message"] == "version 2 revoked"
    refused = cluster.golden(ns, "promote", "candidate", "--version", "2")
    assert refused.returncode == 1 and "is revoked: CVE-2026-0002" in refused.stderr

    # A version declared before it exists is created revoked, and never built or taken.
    cluster.apply(image(2, 3), ns)
    assert cluster.golden(ns, "rebuild", "declared").returncode == 0

    def revoked_3() -> dict[str, Any] | None:
        build = cluster.get_or_none("imagebuild", "declared-3", ns)
        ready = condition_of(build, "Ready")
        return build if ready and ready["reason"] == "Revoked" else None

    build_3 = polling.until(revoked_3, what="declared-3 to be created revoked")
    assert build_3["spec"]["revoked"]["revokedBy"] == "goldenimage/declared"
    assert "revocations" not in build_3["spec"]["recipe"] or build_3["spec"]["recipe"]["revocations"] == []
    assert [t["message"] for t in build_3["status"]["targets"]] == ["revoked before it was built"]
    assert cluster.get("jobs", "-n", ns, "-l", f"{labels.BUILD}=declared-3")["items"] == []
    assert pointer(cluster, ns, "candidate") == (1, "Revoked")
    # The declarations changed no recipe: no version beyond the one asked for.
    assert cluster.get_or_none("imagebuild", "declared-4", ns) is None

    # Entries removed from Git: the builds stay revoked, and the image says so.
    cluster.apply(image(), ns)
    kept = polling.until(lambda: (c := revocations()) and c["reason"] == "CannotWithdraw" and c, what="CannotWithdraw")
    assert kept["status"] == "False" and kept["message"].startswith("versions 2, 3 stay revoked")

    def warned() -> list[dict[str, Any]]:
        return [e for e in cluster.get("events", "-n", ns)["items"] if e["reason"] == "RevocationNotWithdrawn"]

    (event,) = polling.until(warned, what="a RevocationNotWithdrawn event")
    assert (event["type"], event["involvedObject"]["name"]) == ("Warning", "declared")
    for version in (2, 3):
        assert cluster.get("imagebuild", f"declared-{version}", "-n", ns)["spec"]["revoked"]
    assert pointer(cluster, ns, "candidate") == (1, "Revoked")


def test_failing_checks_block_promotion_and_leave_no_instance(
    stack: Stack, cluster: Cluster, ns: str, aws: AwsApi
) -> None:
    # Nothing serves port 2999 on the machines, and the command exits 1: both checks fail.
    failing = app(
        "flaky",
        [
            {"tcp": {"port": 22}},
            {"tcp": {"port": 2999}, "timeout": "4s"},
            {"name": "marker", "command": {"run": "test -e /etc/never-baked"}, "timeout": "30s"},
        ],
    )
    cluster.apply([failing, channels("flaky")[0]], ns)

    def settled() -> dict[str, Any] | None:
        build = cluster.get_or_none("imagebuild", "flaky-1", ns)
        validated = condition_of(build, "Validated")
        failed = validated and (validated["status"], validated["reason"]) == ("False", "ValidationFailed")
        return build if failed else None

    build = polling.until(settled, timeout=600, what="flaky-1 to fail validation")
    ready = condition_of(build, "Ready")
    assert ready and ready["reason"] == "ValidationFailed" and "tcp-2999" in ready["message"], ready
    passed = {c["name"]: c["passed"] for v in build["status"]["validation"] for c in v["checks"]}
    assert passed == {"tcp-22": True, "tcp-2999": False, "marker": False}
    messages = [c["message"] for v in build["status"]["validation"] for c in v["checks"] if c["name"] == "marker"]
    assert all("exited 1, expected 0" in m for m in messages), messages
    polling.until(lambda: validation_instances(aws, "flaky") == [], what="validation instances to terminate")

    def waiting() -> dict[str, Any] | None:
        channel = cluster.get("imagechannel", "candidate", "-n", ns)
        ready = condition_of(channel, "Ready")
        return channel.get("status") if ready and ready["reason"] == "NoValidatedVersion" else None

    assert polling.until(waiting, what="the channel to report no validated version").get("current") is None


def test_names_that_once_collided_keep_their_own_jobs_and_validations(
    stack: Stack, cluster: Cluster, ns: str, aws: AwsApi
) -> None:
    """Job names were once `<build>-<target>-<attempt>` and `<build>-<target>-v-<region>-<attempt>`:
    target `aws`'s validation in eu-west-1 and target `aws-v-eu-west-1`'s build were both
    `web-1-aws-v-eu-west-1-1`, and image `web`'s target `a-1-b` built as image `web-1-a`'s target
    `b`. Each now has Jobs of its own, and each artifact is booted by its own validation."""
    source = {"amiFilter": {"name": "debian-12-amd64-*", "owners": ["136693071363"]}}
    validation = {
        "aws": {"subnetSelector": {"tags": {"Purpose": "image-validation"}}},
        "checks": [{"tcp": {"port": 22}}],
    }
    web = golden_image("web", target={"region": "eu-west-1", "source": source}, validation=validation)
    web["spec"]["targets"].append(
        {"name": "aws-v-eu-west-1", "aws": {"sshUsername": "admin", "region": "eu-west-1", "source": source}}
    )
    web["spec"]["targets"].append(
        {"name": "a-1-b", "aws": {"sshUsername": "admin", "region": "eu-west-1", "source": source}}
    )
    other = golden_image("web-1-a", target={"region": "eu-west-1", "source": source})
    other["spec"]["targets"][0]["name"] = "b"
    cluster.apply([web, other], ns)

    built = wait_ready(cluster, ns, "web-1", timeout=900)
    results = {(v["target"], v["region"]): v for v in built["status"]["validation"]}
    artifacts = {t["name"]: t["artifacts"][0]["id"] for t in built["status"]["targets"]}
    assert set(results) == {(t, "eu-west-1") for t in ("aws", "aws-v-eu-west-1", "a-1-b")}
    for target, ami in artifacts.items():
        result = results[(target, "eu-west-1")]
        # Booted from its own artifact, with its own check: not a build Job's result taken for it.
        assert (result["phase"], result["artifact"]) == ("Passed", ami), result
        assert [c["name"] for c in result["checks"]] == ["tcp-22"], result
    assert len(set(artifacts.values())) == 3
    wait_built(cluster, ns, "web-1-a-1")

    jobs = cluster.get("jobs", "-n", ns)["items"]
    names_ = [j["metadata"]["name"] for j in jobs]
    # Three builds and three validations of web-1, one of each of web-1-a-1 (validated by default).
    assert len(names_) == len(set(names_)) == 3 + 3 + 1 + 1
    owners = {j["metadata"]["ownerReferences"][0]["name"] for j in jobs}
    assert owners == {"web-1", "web-1-a-1"}


def test_a_channel_never_takes_over_another_teams_parameter(
    stack: Stack, cluster: Cluster, ns: str, aws: AwsApi, request: pytest.FixtureRequest
) -> None:
    """Team A's channel owns /team-a/web; team B's channel, in its own namespace, names the same
    parameter (so that team A's launch templates would start team B's AMI): it is refused."""
    team_a, team_b = ns, make_namespace(cluster, request, "e2e-b")
    try:
        source = {"amiFilter": {"name": "debian-12-amd64-*", "owners": ["136693071363"]}}
        web = golden_image("web", target={"region": "eu-west-1", "source": source})
        channel = image_channel("prod", "web", publish={"aws": {"ssmParameter": "/team-a/web"}})
        cluster.apply([web, channel], team_a)
        wait_version(cluster, team_a, "prod", 1, timeout=600)
        ours = amis(cluster, team_a, "web-1")["eu-west-1"]
        polling.until(
            lambda: aws.call("eu-west-1", "get_parameter", service="ssm", Name="/team-a/web") is not None,
            what="/team-a/web to be written",
        )
        assert ssm(aws, "eu-west-1", "/team-a/web")["Value"] == ours

        cluster.apply([web, channel], team_b)
        wait_version(cluster, team_b, "prod", 1, timeout=600)
        theirs = amis(cluster, team_b, "web-1")["eu-west-1"]
        assert theirs != ours

        def refused() -> dict[str, Any] | None:
            published = condition_of(cluster.get("imagechannel", "prod", "-n", team_b), "Published")
            return published if published and published["reason"] == "PublishFailed" else None

        published = polling.until(refused, what=f"{team_b}/prod to report its publication refused")
        assert published["status"] == "False"
        assert (
            f"SSM parameter /team-a/web in eu-west-1 exists and is not owned by channel {team_b}/prod: "
            "delete it or publish elsewhere"
        ) in published["message"], published
        # Team A's parameter still says team A's AMI, and is still team A's.
        assert ssm(aws, "eu-west-1", "/team-a/web")["Value"] == ours
        tags = aws.client("ssm", "eu-west-1").list_tags_for_resource(ResourceType="Parameter", ResourceId="/team-a/web")
        owner = {t["Key"]: t["Value"] for t in tags["TagList"]}
        assert (owner[labels.NAMESPACE], owner[labels.CHANNEL]) == (team_a, "prod")
        kept = condition_of(cluster.get("imagechannel", "prod", "-n", team_a), "Published")
        assert kept is not None and kept["status"] == "True", kept
    finally:
        cluster.kubectl("delete", "namespace", team_b, "--wait=false", check=False)
