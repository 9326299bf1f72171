"""`kubectl golden` against the real API server (no operator: statuses are written here)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from support.cluster import Cluster

pytestmark = pytest.mark.integration

PLUGIN = str(Path(sys.executable).parent / "kubectl-golden")
NOW = "2026-11-21T10:00:00Z"


def golden(cluster: Cluster, ns: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PLUGIN, f"--kubeconfig={cluster.kubeconfig}", "-n", ns, *args], capture_output=True, text=True, timeout=60
    )


def condition(type_: str, status: str, reason: str) -> dict[str, str]:
    return {"type": type_, "status": status, "reason": reason, "message": "", "lastTransitionTime": NOW}


def build(cluster: Cluster, ns: str, version: int, *, validated: bool = True, revoked: str | None = None) -> None:
    spec: dict[str, Any] = {
        "image": "web-base",
        "version": version,
        "fingerprint": "sha256:" + "ab" * 32,
        "reason": "Initial",
        "recipe": {
            "targets": [
                {"name": "aws-eu", "aws": {"region": "eu-west-1", "source": {"amiId": "ami-0123456789abcdef0"}}}
            ]
        },
    }
    if revoked:
        spec["revoked"] = {"reason": revoked}
    cluster.apply(
        {
            "apiVersion": "goldenimage.io/v1alpha1",
            "kind": "ImageBuild",
            "metadata": {"name": f"web-base-{version}"},
            "spec": spec,
        },
        ns,
    )
    ready = condition("Ready", "True", "Validated") if validated else condition("Ready", "False", "ValidationFailed")
    status = {
        "conditions": [
            condition("Validated", "True" if validated else "False", "Validated" if validated else "ValidationFailed"),
            ready,
        ]
    }
    cluster.kubectl(
        "patch",
        "imagebuild",
        f"web-base-{version}",
        "-n",
        ns,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": status}),
    )


def entry(version: int, reason: str = "LatestValidated") -> dict[str, Any]:
    return {"version": version, "build": f"web-base-{version}", "promotedAt": NOW, "reason": reason, "artifacts": []}


def channel(cluster: Cluster, ns: str, current: int | None, history: list[int]) -> None:
    cluster.apply(
        {
            "apiVersion": "goldenimage.io/v1alpha1",
            "kind": "ImageChannel",
            "metadata": {"name": "web-prod"},
            "spec": {"image": "web-base", "source": {"latestValidated": {}}},
        },
        ns,
    )
    status = {"current": entry(current) if current else None, "history": [entry(v) for v in history]}
    cluster.kubectl(
        "patch",
        "imagechannel",
        "web-prod",
        "-n",
        ns,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": status}),
    )


def spec_version(cluster: Cluster, ns: str) -> int | None:
    version: int | None = cluster.get("imagechannel", "web-prod", "-n", ns)["spec"].get("version")
    return version


def test_promote_sets_spec_version_and_refuses_unusable_versions(cluster: Cluster, namespace: str) -> None:
    build(cluster, namespace, 1)
    build(cluster, namespace, 2, validated=False)
    build(cluster, namespace, 3, revoked="CVE-2026-1234")
    channel(cluster, namespace, 1, [])
    dry = golden(cluster, namespace, "promote", "web-prod", "--version", "1", "--dry-run")
    assert dry.returncode == 0 and '--type=merge -p \'{"spec": {"version": 1}}\'' in dry.stdout
    assert spec_version(cluster, namespace) is None
    for version, error in (
        ("2", "is not validated (ValidationFailed"),
        ("3", "is revoked: CVE-2026-1234"),
        ("9", "has no ImageBuild"),
    ):
        refused = golden(cluster, namespace, "promote", "web-prod", "--version", version)
        assert refused.returncode == 1 and error in refused.stderr, refused.stderr
    assert golden(cluster, namespace, "promote", "web-prod", "--version", "1").returncode == 0
    assert spec_version(cluster, namespace) == 1


def test_flags_after_the_subcommand(cluster: Cluster, namespace: str) -> None:
    build(cluster, namespace, 1)
    channel(cluster, namespace, None, [])
    argv = [PLUGIN, "promote", "web-prod", "--version", "1", "-n", namespace, f"--kubeconfig={cluster.kubeconfig}"]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert spec_version(cluster, namespace) == 1


def test_unknown_channel(cluster: Cluster, namespace: str) -> None:
    result = golden(cluster, namespace, "rollback", "web-prd")
    assert result.returncode == 1 and f"imagechannel 'web-prd' not found in namespace {namespace}" in result.stderr


def test_rollback_to_the_previous_usable_entry(cluster: Cluster, namespace: str) -> None:
    for version in (1, 2, 3):
        build(cluster, namespace, version, revoked="bad" if version == 2 else None)
    channel(cluster, namespace, 3, [2, 1])
    result = golden(cluster, namespace, "rollback", "web-prod")
    assert result.returncode == 0 and "roll back from version 3 to version 1" in result.stdout
    assert spec_version(cluster, namespace) == 1


def test_nothing_to_roll_back_to(cluster: Cluster, namespace: str) -> None:
    build(cluster, namespace, 1)
    channel(cluster, namespace, 1, [1])
    result = golden(cluster, namespace, "rollback", "web-prod")
    assert result.returncode == 1 and "no earlier usable version" in result.stderr


def test_revoke_rebuild_status_and_history(cluster: Cluster, namespace: str) -> None:
    build(cluster, namespace, 1)
    build(cluster, namespace, 2)
    channel(cluster, namespace, 2, [1])
    cluster.kubectl("apply", "-n", namespace, "-f", str(Path(__file__).parents[2] / "examples" / "aws-web-base.yaml"))
    assert golden(cluster, namespace, "revoke", "web-base-2", "--reason", "CVE-2026-1234").returncode == 0
    revoked = cluster.get("imagebuild", "web-base-2", "-n", namespace)["spec"]["revoked"]
    assert revoked["reason"] == "CVE-2026-1234" and revoked["revokedBy"] and revoked["revokedAt"]
    assert golden(cluster, namespace, "rebuild", "web-base").returncode == 0
    assert (
        "goldenimage.io/rebuild" in cluster.get("goldenimage", "web-base", "-n", namespace)["metadata"]["annotations"]
    )
    status = golden(cluster, namespace, "status")
    assert status.returncode == 0
    assert "CHANNEL" in status.stdout and "web-prod" in status.stdout and "CVE-2026-1234" in status.stdout
    history = golden(cluster, namespace, "history", "web-prod").stdout.splitlines()
    assert history[0].split() == ["VERSION", "BUILD", "PROMOTED", "REASON", "MESSAGE"]
    assert history[1].split()[:3] == ["*", "2", "web-base-2"]
    missing = golden(cluster, namespace, "revoke", "web-base-9", "--reason", "x")
    assert missing.returncode == 1 and "imagebuild 'web-base-9' not found" in missing.stderr
