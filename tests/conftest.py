"""Fixtures shared by the tiers: unit tests use none of them.

Integration and end-to-end tests get a real control plane (kube-apiserver, etcd and
kube-controller-manager built by hack/build-control-plane.sh, or KUBEBUILDER_ASSETS) with the
CRDs applied and the local pod executor running; or an existing cluster named by
GOLDENIMAGE_TEST_KUBECONFIG.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import pytest

from goldenimage_dev.binaries import MissingBinariesError, find
from goldenimage_dev.machines import leftovers
from support import components, procs
from support.cluster import Cluster, start_local, use_existing
from support.namespaces import make_namespace


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
    local = start_local(binaries)
    procs.started(local.pids)
    try:
        yield local
    finally:
        local.stop()


@pytest.fixture
def namespace(cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace per test, deleted afterwards (without waiting)."""
    name = make_namespace(cluster, request, "t")
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture
def executor(cluster: Cluster) -> Cluster:
    if not cluster.has_executor:
        pytest.skip("runs pods through the local pod executor, which only runs with the local control plane")
    return cluster


@pytest.hookimpl(trylast=True)  # after the fixtures' own teardown
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """No process a fixture started may outlive the run."""
    alive = [pid for pid in procs.STARTED if procs.alive(pid)]
    if alive:
        session.exitstatus = 1
        print(f"\nprocesses started by the test fixtures are still running: {alive}")
    # Machines booted by this process live in a cgroup named for it; the fixtures that booted
    # them must have stopped them (and with them their processes, mounts and veths).
    with contextlib.suppress(OSError):  # no cgroup2 hierarchy: no machine was ever booted
        mine = leftovers.tree() / leftovers.Owner.me().key
        if mine.exists() and leftovers.procs(mine):
            session.exitstatus = 1
            print(f"\nmachines booted by the tests are still running: {leftovers.procs(mine)} in {mine}")
