"""Validation and channels end to end: boot tests in moto on the loopback network, a candidate
channel that takes validated builds, a prod channel that follows it after a soak, publication
to SSM parameters, tags and a ConfigMap, `kubectl golden` rollback, and revocation."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest

from goldenimage.local.aws import CREDENTIALS
from goldenimage.local.instances import InstanceAgent
from goldenimage.local.stack import Stack
from goldenimage.packer import tags
from support import polling
from support.cluster import Cluster

pytestmark = pytest.mark.e2e

EC2 = Callable[[str], Any]
REGIONS = ("eu-west-1", "us-east-1")
GOLDEN = [str(Path(sys.executable).parent / "kubectl-golden")]


def app(name: str, checks: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": "goldenimage.io/v1alpha1",
        "kind": "GoldenImage",
        "metadata": {"name": name},
        "spec": {
            "targets": [
                {
                    "name": "aws",
                    "aws": {
                        "region": "eu-west-1",
                        "copyToRegions": ["us-east-1"],
                        "source": {"amiFilter": {"name": "RHEL-9.*_HVM-*", "owners": ["309956199498"]}},
                    },
                }
            ],
            "tags": {"App": name},
            "validation": {
                "timeout": "5m",
                "aws": {"subnetSelector": {"tags": {"Purpose": "image-validation"}}},
                "checks": checks,
            },
        },
    }


GOOD_CHECKS = [
    {"tcp": {"port": 2222}},
    {"http": {"port": 8080, "path": "/health", "contains": "ok"}},
    {"name": "agent", "command": {"run": "systemctl is-active amazon-ssm-agent"}},
]


def channels(image: str) -> list[dict[str, Any]]:
    def channel(name: str, source: dict[str, Any]) -> dict[str, Any]:
        return {
            "apiVersion": "goldenimage.io/v1alpha1",
            "kind": "ImageChannel",
            "metadata": {"name": name},
            "spec": {
                "image": image,
                "source": source,
                "publish": {
                    "aws": {
                        "ssmParameter": f"/golden/{image}/{name}",
                        "tag": {"key": f"channel/{name}", "value": "current"},
                    },
                    "configMap": {"name": f"{image}-{name}"},
                },
            },
        }

    return [channel("candidate", {"latestValidated": {}}), channel("prod", {"channel": "candidate", "minSoak": "3s"})]


def pointer(cluster: Cluster, ns: str, channel: str) -> tuple[int | None, str | None]:
    current = cluster.get("imagechannel", channel, "-n", ns).get("status", {}).get("current") or {}
    return current.get("version"), current.get("reason")


def wait_version(cluster: Cluster, ns: str, channel: str, version: int, timeout: float = 120) -> str:
    found = polling.until(
        lambda: pointer(cluster, ns, channel) if pointer(cluster, ns, channel)[0] == version else None,
        timeout=timeout,
        what=f"{channel} to point at version {version}",
    )
    return str(found[1])


def amis(cluster: Cluster, ns: str, build: str) -> dict[str, str]:
    status = cluster.get("imagebuild", build, "-n", ns)["status"]
    return {a["region"]: a["id"] for t in status["targets"] for a in t["artifacts"]}


def ssm(stack: Stack, region: str, name: str) -> dict[str, Any]:
    client = boto3.client(
        "ssm",
        region_name=region,
        endpoint_url=stack.moto.endpoint,
        aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    )
    parameter: dict[str, Any] = client.get_parameter(Name=name)["Parameter"]
    return parameter


def tagged(ec2: EC2, region: str, key: str) -> list[str]:
    found = ec2(region).describe_images(Owners=["self"], Filters=[{"Name": f"tag:{key}", "Values": ["current"]}])
    return sorted(i["ImageId"] for i in found["Images"])


def running_validation_instances(ec2: EC2, image: str) -> list[str]:
    out = []
    for region in REGIONS:
        found = ec2(region).describe_instances(
            Filters=[
                {"Name": f"tag:{tags.IMAGE}", "Values": [image]},
                {"Name": f"tag:{tags.ROLE}", "Values": ["validation"]},
            ]
        )
        out += [
            i["InstanceId"]
            for r in found["Reservations"]
            for i in r["Instances"]
            if i["State"]["Name"] not in ("terminated", "shutting-down")
        ]
    return out


def golden(cluster: Cluster, ns: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*GOLDEN, f"--kubeconfig={cluster.kubeconfig}", "-n", ns, *args], capture_output=True, text=True, timeout=60
    )


def assert_published(stack: Stack, cluster: Cluster, ec2: EC2, ns: str, channel: str, build: str) -> None:
    expected = amis(cluster, ns, build)
    for region in REGIONS:

        def parameter(region: str = region) -> dict[str, Any] | None:
            found = ssm(stack, region, f"/golden/app/{channel}")
            return found if found["Value"] == expected[region] else None

        found = polling.until(parameter, what=f"/golden/app/{channel} in {region} to be {expected[region]}")
        assert found["DataType"] == "aws:ec2:image"
        polling.until(
            lambda region=region: tagged(ec2, region, f"channel/{channel}") == [expected[region]],
            what=f"exactly one AMI tagged channel/{channel} in {region}",
        )
    config_map = polling.until(
        lambda: (lambda cm: cm if cm["data"].get("build") == build else None)(
            cluster.get("configmap", f"app-{channel}", "-n", ns)
        ),
        what=f"ConfigMap app-{channel}",
    )
    assert json.loads(config_map["data"]["artifacts.json"])[0]["id"] in expected.values()
    assert config_map["data"]["aws.eu-west-1"] == expected["eu-west-1"]


def test_validate_promote_roll_back_and_revoke(
    stack: Stack, cluster: Cluster, ns: str, ec2: EC2, instances: InstanceAgent
) -> None:
    cluster.apply([app("app", GOOD_CHECKS), *channels("app")], ns)

    # Version 1: built, booted in both regions, every check passed; no instance left running.
    build = polling.until(
        lambda: (
            lambda b: (
                b
                if any(
                    c["type"] == "Ready" and c["status"] == "True" for c in b.get("status", {}).get("conditions", [])
                )
                else None
            )
        )(cluster.get("imagebuild", "app-1", "-n", ns)),
        timeout=180,
        what="app-1 to be validated",
    )
    results = {v["region"]: v for v in build["status"]["validation"]}
    assert set(results) == set(REGIONS)
    for region in REGIONS:
        assert results[region]["phase"] == "Passed"
        assert [c["name"] for c in results[region]["checks"]] == ["tcp-2222", "http-8080", "agent"]
        assert all(c["passed"] for c in results[region]["checks"])
    assert any(a.startswith("127.0.5.") for a in instances.served)
    assert any(a.startswith("127.0.6.") for a in instances.served)
    polling.until(lambda: running_validation_instances(ec2, "app") == [], what="validation instances to terminate")

    # Candidate takes it on validation; prod after its soak; both published.
    assert wait_version(cluster, ns, "candidate", 1) == "LatestValidated"
    assert wait_version(cluster, ns, "prod", 1) == "UpstreamChannel"
    promoted = {
        name: datetime.fromisoformat(cluster.get("imagechannel", name, "-n", ns)["status"]["current"]["promotedAt"])
        for name in ("candidate", "prod")
    }
    assert promoted["prod"] - promoted["candidate"] >= timedelta(seconds=3), promoted  # prod's minSoak
    assert_published(stack, cluster, ec2, ns, "prod", "app-1")
    assert_published(stack, cluster, ec2, ns, "candidate", "app-1")
    image = cluster.get("goldenimage", "app", "-n", ns)["status"]
    assert image["latestValidatedVersion"] == 1

    # Version 2, by request: candidate, then prod, move on.
    assert golden(cluster, ns, "rebuild", "app").returncode == 0
    wait_version(cluster, ns, "candidate", 2, timeout=180)
    wait_version(cluster, ns, "prod", 2)
    assert_published(stack, cluster, ec2, ns, "prod", "app-2")

    # Roll prod back with the plugin: spec.version pins it to 1, and SSM follows.
    dry = golden(cluster, ns, "rollback", "prod", "--dry-run")
    assert dry.returncode == 0 and '"version": 1' in dry.stdout
    assert cluster.get("imagechannel", "prod", "-n", ns)["spec"].get("version") is None
    rolled = golden(cluster, ns, "rollback", "prod")
    assert rolled.returncode == 0, rolled.stderr
    assert "roll back from version 2 to version 1" in rolled.stdout
    assert wait_version(cluster, ns, "prod", 1) == "Rollback"
    assert_published(stack, cluster, ec2, ns, "prod", "app-1")
    history = golden(cluster, ns, "history", "prod").stdout
    assert "Rollback" in history and "UpstreamChannel" in history
    assert pointer(cluster, ns, "candidate")[0] == 2

    # Unpin: prod follows candidate to 2 again. Then revoke 2: both channels move off it.
    cluster.kubectl("patch", "imagechannel", "prod", "-n", ns, "--type=merge", "-p", '{"spec": {"version": null}}')
    wait_version(cluster, ns, "prod", 2)
    revoked = golden(cluster, ns, "revoke", "app-2", "--reason", "CVE-2026-1234")
    assert revoked.returncode == 0, revoked.stderr
    assert wait_version(cluster, ns, "candidate", 1) == "Revoked"
    assert wait_version(cluster, ns, "prod", 1) == "Revoked"
    assert_published(stack, cluster, ec2, ns, "prod", "app-1")
    assert_published(stack, cluster, ec2, ns, "candidate", "app-1")

    def deprecated() -> dict[str, Any] | None:
        build = cluster.get("imagebuild", "app-2", "-n", ns)
        done = [c for c in build["status"]["conditions"] if c["type"] == "Deprecated" and c["status"] == "True"]
        return build if done else None

    build_2 = polling.until(deprecated, what="app-2 to be deprecated")
    assert [c["reason"] for c in build_2["status"]["conditions"] if c["type"] == "Ready"] == ["Revoked"]
    for region, ami in amis(cluster, ns, "app-2").items():
        (found,) = ec2(region).describe_images(ImageIds=[ami])["Images"]
        assert {t["Key"]: t["Value"] for t in found["Tags"]}.get("goldenimage.io/revoked") == "CVE-2026-1234"
    refused = golden(cluster, ns, "promote", "prod", "--version", "2")
    assert refused.returncode == 1 and "is revoked: CVE-2026-1234" in refused.stderr


def test_a_failing_check_blocks_promotion_and_leaves_no_instance(
    stack: Stack, cluster: Cluster, ns: str, ec2: EC2, instances: InstanceAgent
) -> None:
    # Nothing serves port 2999 on the instances: the check fails.
    failing = app("flaky", [{"tcp": {"port": 2222}}, {"tcp": {"port": 2999}, "timeout": "4s"}])
    cluster.apply([failing, channels("flaky")[0]], ns)

    def settled() -> dict[str, Any] | None:
        build = cluster.get("imagebuild", "flaky-1", "-n", ns)
        ready = [c for c in build.get("status", {}).get("conditions", []) if c["type"] == "Validated"]
        return build if ready and ready[0]["status"] == "False" and ready[0]["reason"] == "ValidationFailed" else None

    build = polling.until(settled, timeout=180, what="flaky-1 to fail validation")
    (ready,) = [c for c in build["status"]["conditions"] if c["type"] == "Ready"]
    assert ready["reason"] == "ValidationFailed" and "tcp-2999" in ready["message"]
    passed = {c["name"]: c["passed"] for v in build["status"]["validation"] for c in v["checks"]}
    assert passed == {"tcp-2222": True, "tcp-2999": False}
    polling.until(lambda: running_validation_instances(ec2, "flaky") == [], what="validation instances to terminate")

    def waiting() -> dict[str, Any] | None:
        status = cluster.get("imagechannel", "candidate", "-n", ns).get("status", {})
        ready = [c["reason"] for c in status.get("conditions", []) if c["type"] == "Ready"]
        return status if ready == ["NoValidatedVersion"] else None

    assert polling.until(waiting, what="the channel to report no validated version").get("current") is None
