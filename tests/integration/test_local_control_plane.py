"""The control plane manager and the executor start and stop cleanly: nothing outlives them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from goldenimage_dev.binaries import Binaries, MissingBinariesError, find
from goldenimage_dev.controlplane import ControlPlane
from support import components, procs
from support.cluster import start_local

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def binaries() -> Binaries:
    if os.environ.get("GOLDENIMAGE_TEST_KUBECONFIG"):
        pytest.skip("tests the local control plane, not an existing cluster")
    try:
        return find()
    except MissingBinariesError as exc:
        components.missing("the control plane binaries", str(exc))


def test_stop_leaves_no_process_and_no_files(binaries: Binaries) -> None:
    cluster = start_local(binaries)
    procs.started(cluster.pids)
    try:
        assert cluster.local is not None
        directory = cluster.local.plane.directory
        pids = cluster.pids
        assert len(pids) == 4  # etcd, kube-apiserver, kube-controller-manager, executor
        assert cluster.kubectl("get", "nodes", "-o", "name").stdout.split() == ["node/local-executor"]
        cluster.stop()
        assert [pid for pid in pids if procs.alive(pid)] == []
        assert procs.running_with(str(directory)) == []
        assert not directory.exists()
    finally:
        cluster.stop()  # again, when an assertion stopped the test first; stopping twice is safe


def test_a_failed_start_stops_what_it_started(binaries: Binaries, tmp_path: Path) -> None:
    broken = Binaries(
        kube_apiserver=Path("/bin/false"),
        kube_controller_manager=binaries.kube_controller_manager,
        kubectl=binaries.kubectl,
        etcd=binaries.etcd,
    )
    with pytest.raises(RuntimeError, match="kube-apiserver exited with 1"):
        ControlPlane.start(directory=tmp_path / "cp", binaries=broken)
    assert procs.running_with(str(tmp_path)) == []
