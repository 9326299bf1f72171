"""The Helm chart, rendered by a real helm, and the operator's identity it defines."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml

from goldenimage import paths

from .cluster import Cluster

RELEASE = "goldenimage"
NAMESPACE = "goldenimage-system"


RBAC = ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "RoleBinding")


def render(helm: str, *values: str, namespace: str = NAMESPACE, release: str = RELEASE) -> list[dict[str, Any]]:
    args = [helm, "template", release, str(paths.CHART), f"--namespace={namespace}"]
    for value in values:
        args += ["--set", value]
    result = subprocess.run(args, capture_output=True, text=True, timeout=60, check=True)
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def operator_kubeconfig(cluster: Cluster, helm: str, directory: Path) -> Path:
    """Install the chart's ServiceAccount and RBAC, and a kubeconfig that authenticates as that
    ServiceAccount: the operator then runs with exactly the permissions the chart grants."""
    rbac = [d for d in render(helm) if d["kind"] in RBAC]
    cluster.kubectl("create", "namespace", NAMESPACE, check=False)
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(rbac))
    account = next(d["metadata"]["name"] for d in rbac if d["kind"] == "ServiceAccount")
    token = cluster.kubectl("create", "token", account, "-n", NAMESPACE, "--duration=24h").stdout.strip()
    admin = yaml.safe_load(Path(cluster.kubeconfig).read_text())
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": admin["clusters"],
        "users": [{"name": account, "user": {"token": token}}],
        "contexts": [{"name": account, "context": {"cluster": admin["clusters"][0]["name"], "user": account}}],
        "current-context": account,
    }
    path = directory / "operator.kubeconfig"
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path
