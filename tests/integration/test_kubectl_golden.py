"""`kubectl golden` against the real API server (no operator: statuses are written here)."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest

from goldenimage import paths
from support.cluster import PLUGIN, Cluster
from support.manifests import golden_image, image_build, image_channel

pytestmark = pytest.mark.integration

NOW = "2026-11-21T10:00:00Z"


def condition(type_: str, status: str, reason: str) -> dict[str, str]:
    return {"type": type_, "status": status, "reason": reason, "message": "", "lastTransitionTime": NOW}


def build(
    cluster: Cluster,
    ns: str,
    version: int,
    *,
    validated: bool = True,
    revoked: str | None = None,
    missing: bool = False,
) -> None:
    cluster.apply(image_build("web-base", version, revoked=revoked), ns)
    ready = condition("Ready", "True", "Validated") if validated else condition("Ready", "False", "ValidationFailed")
    artifact = {"region": "eu-west-1", "id": f"ami-00000000000000{version:03d}"}
    status = {
        "targets": [{"name": "aws-eu", "cloud": "aws", "phase": "Succeeded", "artifacts": [artifact]}],
        "missingArtifacts": [{"target": "aws-eu", **artifact}] if missing else [],
        "conditions": [
            condition("Validated", "True" if validated else "False", "Validated" if validated else "ValidationFailed"),
            ready,
        ],
    }
    cluster.patch_status("imagebuild", f"web-base-{version}", ns, {"status": status})


def entry(version: int, reason: str = "LatestValidated") -> dict[str, Any]:
    return {"version": version, "build": f"web-base-{version}", "promotedAt": NOW, "reason": reason, "artifacts": []}


def channel(cluster: Cluster, ns: str, current: int | None, history: list[int]) -> None:
    cluster.apply(image_channel("web-prod", "web-base"), ns)
    status = {"current": entry(current) if current else None, "history": [entry(v) for v in history]}
    cluster.patch_status("imagechannel", "web-prod", ns, {"status": status})


def spec_version(cluster: Cluster, ns: str) -> int | None:
    version: int | None = cluster.get("imagechannel", "web-prod", "-n", ns)["spec"].get("version")
    return version


def test_promote_sets_spec_version_and_refuses_unusable_versions(cluster: Cluster, namespace: str) -> None:
    build(cluster, namespace, 1)
    build(cluster, namespace, 2, validated=False)
    build(cluster, namespace, 3, revoked="CVE-2026-1234")
    build(cluster, namespace, 4, missing=True)
    channel(cluster, namespace, 1, [])
    dry = cluster.golden(namespace, "promote", "web-prod", "--version", "1", "--dry-run")
    assert dry.returncode == 0 and '--type=merge -p \'{"spec": {"version": 1}}\'' in dry.stdout
    assert spec_version(cluster, namespace) is None
    for version, error in (
        ("2", "is not validated (ValidationFailed"),
        ("3", "is revoked: CVE-2026-1234"),
        ("4", "lost artifacts: ami-00000000000000004 in eu-west-1"),
        ("9", "has no ImageBuild"),
    ):
        refused = cluster.golden(namespace, "promote", "web-prod", "--version", version)
        assert refused.returncode == 1 and error in refused.stderr, refused.stderr
    assert cluster.golden(namespace, "promote", "web-prod", "--version", "1").returncode == 0
    assert spec_version(cluster, namespace) == 1


def test_flags_after_the_subcommand(cluster: Cluster, namespace: str) -> None:
    build(cluster, namespace, 1)
    channel(cluster, namespace, None, [])
    argv = [PLUGIN, "promote", "web-prod", "--version", "1", "-n", namespace, f"--kubeconfig={cluster.kubeconfig}"]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert spec_version(cluster, namespace) == 1


def test_unknown_channel(cluster: Cluster, namespace: str) -> None:
    result = cluster.golden(namespace, "rollback", "web-prd")
    assert result.returncode == 1 and f"imagechannel 'web-prd' not found in namespace {namespace}" in result.stderr


def test_rollback_to_the_previous_usable_entry(cluster: Cluster, namespace: str) -> None:
    for version in (1, 2, 3):
        build(cluster, namespace, version, revoked="bad" if version == 2 else None)
    channel(cluster, namespace, 3, [2, 1])
    result = cluster.golden(namespace, "rollback", "web-prod")
    assert result.returncode == 0 and "roll back from version 3 to version 1" in result.stdout
    assert spec_version(cluster, namespace) == 1


def test_nothing_to_roll_back_to(cluster: Cluster, namespace: str) -> None:
    build(cluster, namespace, 1)
    channel(cluster, namespace, 1, [1])
    result = cluster.golden(namespace, "rollback", "web-prod")
    assert result.returncode == 1 and "no earlier usable version" in result.stderr


def test_revoke_rebuild_status_and_history(cluster: Cluster, namespace: str) -> None:
    build(cluster, namespace, 1)
    build(cluster, namespace, 2)
    channel(cluster, namespace, 2, [1])
    cluster.kubectl("apply", "-n", namespace, "-f", str(paths.EXAMPLES / "aws-web-base.yaml"))
    assert cluster.golden(namespace, "revoke", "web-base-2", "--reason", "CVE-2026-1234").returncode == 0
    revoked = cluster.get("imagebuild", "web-base-2", "-n", namespace)["spec"]["revoked"]
    assert revoked["reason"] == "CVE-2026-1234" and revoked["revokedBy"] and revoked["revokedAt"]
    assert cluster.golden(namespace, "rebuild", "web-base").returncode == 0
    assert (
        "goldenimage.io/rebuild" in cluster.get("goldenimage", "web-base", "-n", namespace)["metadata"]["annotations"]
    )
    status = cluster.golden(namespace, "status")
    assert status.returncode == 0
    assert "CHANNEL" in status.stdout and "web-prod" in status.stdout and "CVE-2026-1234" in status.stdout
    history = cluster.golden(namespace, "history", "web-prod").stdout.splitlines()
    assert history[0].split() == ["VERSION", "BUILD", "PROMOTED", "REASON", "MESSAGE"]
    assert history[1].split()[:3] == ["*", "2", "web-base-2"]
    missing = cluster.golden(namespace, "revoke", "web-base-9", "--reason", "x")
    assert missing.returncode == 1 and "imagebuild 'web-base-9' not found" in missing.stderr


def test_unpin_returns_a_pinned_channel_to_its_policy(cluster: Cluster, namespace: str) -> None:
    build(cluster, namespace, 1)
    cluster.apply(image_channel("web-prod", "web-base", {"channel": "web-candidate"}, version=1), namespace)
    dry = cluster.golden(namespace, "unpin", "web-prod", "--dry-run")
    assert dry.returncode == 0 and '--type=merge -p \'{"spec": {"version": null}}\'' in dry.stdout, dry.stderr
    assert spec_version(cluster, namespace) == 1
    result = cluster.golden(namespace, "unpin", "web-prod")
    assert result.returncode == 0, result.stderr
    assert "unpinned from version 1; it follows its policy again (channel web-candidate)" in result.stdout
    spec = cluster.get("imagechannel", "web-prod", "-n", namespace)["spec"]
    assert "version" not in spec and spec["source"] == {"channel": "web-candidate"}
    again = cluster.golden(namespace, "unpin", "web-prod")
    assert again.returncode == 1 and "web-prod is not pinned" in again.stderr


def test_unpin_refuses_a_channel_without_a_policy(cluster: Cluster, namespace: str) -> None:
    pinned = image_channel("web-pinned", "web-base", version=1)
    del pinned["spec"]["source"]
    cluster.apply(pinned, namespace)
    refused = cluster.golden(namespace, "unpin", "web-pinned")
    assert refused.returncode == 1 and "web-pinned has no spec.source" in refused.stderr, refused.stderr
    assert cluster.get("imagechannel", "web-pinned", "-n", namespace)["spec"]["version"] == 1


def test_promote_refuses_a_version_the_image_declares_revoked(cluster: Cluster, namespace: str) -> None:
    declared = [{"version": 2, "reason": "CVE-2026-1234"}]
    target = {"region": "eu-west-1", "source": {"amiId": "ami-0123456789abcdef0"}}
    cluster.apply(golden_image("web-base", target=target, revocations=declared), namespace)
    build(cluster, namespace, 1)
    build(cluster, namespace, 2)  # not revoked yet: no operator runs here
    channel(cluster, namespace, 1, [])
    refused = cluster.golden(namespace, "promote", "web-prod", "--version", "2")
    assert refused.returncode == 1 and "version 2 is revoked: CVE-2026-1234" in refused.stderr, refused.stderr
    stored = cluster.get("goldenimage", "web-base", "-n", namespace)["spec"]["revocations"]
    assert stored == declared
