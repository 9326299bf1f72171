"""The multi-cloud example end to end: one recipe built by three Jobs in parallel — on AWS (moto),
GCP and Azure (their fakes behind the TLS edge) — each on a booted machine; every artifact in every
cloud and region boots for validation, and only then is the version Validated and promoted."""

from __future__ import annotations

from typing import Any

import pytest

from goldenimage import paths
from goldenimage.api import labels
from goldenimage_dev.clouds import GCP_PROJECT
from goldenimage_dev.stack import Stack
from support import polling
from support.builds import wait_ready, wait_version
from support.cluster import Cluster

pytestmark = pytest.mark.e2e

# Where the example puts each target's artifacts: AWS copies to two more regions, Azure replicates
# to a second one, GCP stores one image in its zone's region (no storageLocations given).
CHANNEL = "web-multicloud-candidate"
REGIONS = {
    "aws-eu": ["eu-central-1", "eu-west-1", "us-east-1"],
    "gcp-eu": ["europe-west1"],
    "azure-we": ["northeurope", "westeurope"],
}


def test_the_multi_cloud_example_is_validated_in_every_cloud_and_promoted(
    stack: Stack, cluster: Cluster, ns: str
) -> None:
    for account in ("packer-aws", "packer-gcp", "packer-azure"):
        cluster.kubectl("create", "serviceaccount", account, "-n", ns)
    for path in ("web-baseline-playbook.yaml", "multi-cloud.yaml"):
        cluster.kubectl("apply", "-n", ns, "-f", str(paths.EXAMPLES / path))

    build = wait_ready(cluster, ns, "web-multicloud-1", timeout=900)

    targets = {t["name"]: t for t in build["status"]["targets"]}
    assert {name: t["phase"] for name, t in targets.items()} == dict.fromkeys(REGIONS, "Succeeded")
    recorded = {name: sorted(a["region"] for a in t["artifacts"]) for name, t in targets.items()}
    assert recorded == REGIONS
    # Every artifact, in every cloud and region, was booted and passed both checks.
    validated = {(v["target"], v["region"]): v for v in build["status"]["validation"]}
    assert sorted(validated) == sorted((t, r) for t, regions in REGIONS.items() for r in regions)
    for (target, region), result in validated.items():
        assert result["phase"] == "Passed", (target, region, result)
        assert [(c["name"], c["passed"]) for c in result["checks"]] == [("tcp-22", True), ("http-80", True)]

    # The candidate channel takes it, and its ConfigMap names every artifact.
    def published() -> dict[str, Any] | None:
        found = cluster.get_or_none("configmap", "web-multicloud-candidate", ns)
        return found if found and found["data"].get("build") == "web-multicloud-1" else None

    data = polling.until(published, what="the candidate channel's ConfigMap")["data"]
    artifacts = {(t, a["region"]): a["id"] for t, target in targets.items() for a in target["artifacts"]}
    for (target, region), artifact in artifacts.items():
        assert data[f"{target}.{region}"] == artifact
    assert wait_version(cluster, ns, CHANNEL, 1) == "LatestValidated"

    # Version 2 goes the same way; a rollback returns the channel to 1; revoking 1 moves it off
    # to 2 again and marks version 1's artifacts in every cloud.
    assert cluster.golden(ns, "rebuild", "web-multicloud").returncode == 0
    wait_ready(cluster, ns, "web-multicloud-2", timeout=900)
    assert wait_version(cluster, ns, CHANNEL, 2) == "LatestValidated"
    rolled = cluster.golden(ns, "rollback", CHANNEL)
    assert rolled.returncode == 0, rolled.stderr
    assert wait_version(cluster, ns, CHANNEL, 1) == "Rollback"
    revoked = cluster.golden(ns, "revoke", "web-multicloud-1", "--reason", "CVE-2026-1234")
    assert revoked.returncode == 0, revoked.stderr
    assert wait_version(cluster, ns, CHANNEL, 2) == "Revoked"

    def marked() -> bool:
        """Version 1's artifacts carry the revocation in each cloud: the AMIs their tag, the GCE
        image its deprecation state, the gallery version its end of life."""
        aws = [
            stack.aws.ec2(region).describe_images(ImageIds=[ami])["Images"][0]
            for (target, region), ami in artifacts.items()
            if target == "aws-eu"
        ]
        (gcp,) = [a for (t, _), a in artifacts.items() if t == "gcp-eu"]
        image = stack.clouds.gce.image(GCP_PROJECT, gcp.rsplit("/", 1)[-1]) or {}
        version = stack.clouds.arm.resource(artifacts[("azure-we", "westeurope")]) or {}
        return (
            all(any(t["Key"] == labels.REVOKED for t in i.get("Tags", [])) for i in aws)
            and (image.get("deprecated") or {}).get("state") == "DEPRECATED"
            and bool(version.get("properties", {}).get("publishingProfile", {}).get("endOfLifeDate"))
        )

    polling.until(marked, what="version 1's artifacts to be marked revoked in AWS, GCP and Azure")
