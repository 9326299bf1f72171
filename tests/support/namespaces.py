"""Namespaces per test."""

from __future__ import annotations

import hashlib

import pytest

from . import polling
from .cluster import Cluster


def make_namespace(cluster: Cluster, request: pytest.FixtureRequest, prefix: str) -> str:
    digest = hashlib.sha256(request.node.nodeid.encode()).hexdigest()[:6]
    name = f"{prefix}-{request.node.name[:40].lower()}"
    name = "".join(c if c.isalnum() else "-" for c in name).strip("-")[:50] + f"-{digest}"
    cluster.kubectl("create", "namespace", name)
    # Pods are refused until the service-account controller creates `default`.
    polling.until(
        lambda: cluster.kubectl("get", "serviceaccount", "default", "-n", name, check=False).returncode == 0,
        timeout=30,
        what=f"the default service account in {name}",
    )
    return name
