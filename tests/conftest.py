"""Fixtures shared by the tiers: unit tests use none of them.

Integration and end-to-end tests get a real control plane (kube-apiserver, etcd and
kube-controller-manager built by hack/build-control-plane.sh, or KUBEBUILDER_ASSETS) with the
CRDs applied and the local pod executor running; or an existing cluster named by
GOLDENIMAGE_TEST_KUBECONFIG.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator

import pytest

from goldenimage.local.binaries import MissingBinariesError, find
from support import components, polling, procs
from support.cluster import Cluster, start_local, use_existing

_started: list[int] = []


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    existing = os.environ.get("GOLDENIMAGE_TEST_KUBECONFIG")
    if existing:
        yield use_existing(existing)
        return
    try:
        binaries = find(build=False)
    except MissingBinariesError as exc:
        components.missing("the control plane binaries", str(exc))
    started = start_local(binaries)
    _started.extend(started.pids)
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture
def namespace(cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace per test, deleted afterwards (without waiting)."""
    digest = hashlib.sha256(request.node.nodeid.encode()).hexdigest()[:6]
    name = f"t-{request.node.name[:40].lower()}"
    name = "".join(c if c.isalnum() else "-" for c in name).strip("-")[:50] + f"-{digest}"
    cluster.kubectl("create", "namespace", name)
    # Pods are refused until the service-account controller creates `default`.
    polling.until(
        lambda: cluster.kubectl("get", "serviceaccount", "default", "-n", name, check=False).returncode == 0,
        timeout=30,
        what=f"the default service account in {name}",
    )
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture
def executor(cluster: Cluster) -> Cluster:
    if not cluster.has_executor:
        pytest.skip("runs pods through the local pod executor, which only runs with the local control plane")
    return cluster


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """No process a fixture started may outlive the run."""
    alive = [pid for pid in _started if procs.alive(pid)]
    if alive:
        session.exitstatus = 1
        print(f"\nprocesses started by the test fixtures are still running: {alive}")
