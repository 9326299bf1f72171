"""A local cluster for tests and the demo: the control plane with the CRDs installed and the
local pod executor running as a separate process."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from . import paths, processes
from .binaries import Binaries
from .controlplane import ControlPlane

NODE = "local-executor"


@dataclass
class LocalCluster:
    plane: ControlPlane
    executor: subprocess.Popen[bytes] | None = None

    @classmethod
    def start(
        cls, binaries: Binaries | None = None, *, directory: Path | None = None, build: bool = False
    ) -> LocalCluster:
        cluster = cls(ControlPlane.start(binaries=binaries, directory=directory, build=build))
        try:
            cluster.install_crds()
            cluster.start_executor()
        except BaseException:
            cluster.stop()
            raise
        return cluster

    @property
    def kubeconfig(self) -> Path:
        return self.plane.kubeconfig

    @property
    def pids(self) -> list[int]:
        return [*self.plane.pids, *([self.executor.pid] if self.executor else [])]

    def install_crds(self) -> None:
        self.plane.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(paths.CRDS))
        self.plane.kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", str(paths.CRDS))

    def start_executor(self) -> None:
        serving = self.plane.kubelet_serving
        assert serving is not None
        self.executor = processes.spawn(
            [
                sys.executable,
                "-m",
                "goldenimage_dev.executor",
                f"--kubeconfig={self.kubeconfig}",
                f"--node-name={NODE}",
                f"--work-dir={self.plane.directory / 'x'}",
                f"--serving-cert={serving.cert}",
                f"--serving-key={serving.key}",
            ],
            log=self.plane.logs("executor"),
            # Pods run this environment's programs, as if it were their image.
            env={**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"},
        )
        processes.wait_until(self._node_ready, timeout=30, interval=0.2, what="the local pod executor's node")

    def _node_ready(self) -> bool:
        processes.raise_if_exited("the local pod executor", self.executor, self.plane.logs("executor"))
        result = self.plane.kubectl("get", "node", NODE, "-o", "json", check=False)
        if result.returncode != 0:
            return False
        conditions = json.loads(result.stdout).get("status", {}).get("conditions", [])
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

    def stop(self) -> None:
        if self.executor is not None:
            processes.stop(self.executor)
            self.executor = None
        # The executor removes its pods' directory when it stops; after a SIGKILL, this does.
        pods = self.plane.directory / "x" / "p"
        if pods.is_symlink():
            shutil.rmtree(pods.resolve(), ignore_errors=True)
        self.plane.stop()
