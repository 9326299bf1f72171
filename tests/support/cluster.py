"""A cluster to test against: the project's local cluster (control plane, CRDs and the pod
executor), or an existing cluster named by GOLDENIMAGE_TEST_KUBECONFIG."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client, config

from goldenimage import paths
from goldenimage_dev.binaries import Binaries
from goldenimage_dev.cluster import LocalCluster
from goldenimage_dev.stack import BIN

PLUGIN = str(BIN / "kubectl-golden")


@dataclass
class Cluster:
    kubeconfig: Path
    kubectl_path: str
    local: LocalCluster | None = None
    api: client.ApiClient = field(init=False)

    def __post_init__(self) -> None:
        self.api = config.new_client_from_config(config_file=str(self.kubeconfig))

    @property
    def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.api)

    @property
    def batch(self) -> client.BatchV1Api:
        return client.BatchV1Api(self.api)

    @property
    def custom(self) -> client.CustomObjectsApi:
        return client.CustomObjectsApi(self.api)

    @property
    def has_executor(self) -> bool:
        return self.local is not None and self.local.executor is not None

    @property
    def pids(self) -> list[int]:
        return self.local.pids if self.local else []

    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [self.kubectl_path, f"--kubeconfig={self.kubeconfig}", *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
        return result

    def get(self, *args: str) -> Any:
        return json.loads(self.kubectl("get", *args, "-o", "json").stdout)

    def get_or_none(self, kind: str, name: str, namespace: str) -> Any:
        """The object, or None when the API server says it does not exist."""
        found = self.kubectl("get", kind, name, "-n", namespace, "-o", "json", check=False)
        if found.returncode == 0:
            return json.loads(found.stdout)
        if "NotFound" in found.stderr:
            return None
        raise AssertionError(f"kubectl get {kind} {name} failed ({found.returncode}):\n{found.stderr}")

    def patch_status(self, kind: str, name: str, namespace: str, body: dict[str, Any]) -> None:
        """A merge patch through the status subresource, as the operator writes status."""
        self.kubectl(
            "patch", kind, name, "-n", namespace, "--subresource=status", "--type=merge", "-p", json.dumps(body)
        )

    def golden(self, namespace: str, *args: str) -> subprocess.CompletedProcess[str]:
        """The `kubectl golden` plugin against this cluster; the caller checks the outcome."""
        return subprocess.run(
            [PLUGIN, f"--kubeconfig={self.kubeconfig}", "-n", namespace, *args],
            capture_output=True,
            text=True,
            timeout=60,
        )

    def apply(self, manifest: dict[str, Any] | list[dict[str, Any]], namespace: str, *extra: str) -> str:
        docs = manifest if isinstance(manifest, list) else [manifest]
        return self.kubectl("apply", "-n", namespace, "-f", "-", *extra, input=yaml.safe_dump_all(docs)).stdout

    def stop(self) -> None:
        if self.local is not None:
            self.local.stop()


def condition_of(obj: dict[str, Any] | None, type_: str) -> dict[str, Any] | None:
    """The object's condition of `type_`, or None (no object, no status yet, no such condition)."""
    found = [c for c in ((obj or {}).get("status") or {}).get("conditions", []) if c["type"] == type_]
    assert len(found) <= 1, f"more than one {type_} condition: {found}"
    return found[0] if found else None


def start_local(binaries: Binaries) -> Cluster:
    local = LocalCluster.start(binaries)
    return Cluster(kubeconfig=local.kubeconfig, kubectl_path=str(binaries.kubectl), local=local)


def use_existing(kubeconfig: str) -> Cluster:
    cluster = Cluster(kubeconfig=Path(kubeconfig), kubectl_path=os.environ.get("KUBECTL", "kubectl"))
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(paths.CRDS))
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", str(paths.CRDS))
    return cluster
