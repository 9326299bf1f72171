"""Everything the operator needs, running locally: the cluster (control plane, CRDs, pod
executor), the three clouds on real machines (clouds.py, in this process), and the operator
itself as a process configured for them. Used by the end-to-end tests and the demo, inside a
lab."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from goldenimage.clouds.aws.adapter import AwsApi

from . import processes
from .aws import CREDENTIALS
from .binaries import Binaries
from .clouds import LocalClouds
from .cluster import LocalCluster
from .controlplane import free_port, http_ok

BIN = Path(sys.executable).parent


@dataclass
class Stack:
    cluster: LocalCluster
    clouds: LocalClouds
    operator: subprocess.Popen[bytes] | None = None
    health_port: int = 0
    owns_cluster: bool = True
    namespaces: tuple[str, ...] = ()
    # The identity the operator runs as; the cluster's admin when unset.
    operator_kubeconfig: Path | None = None

    @classmethod
    def start(
        cls,
        binaries: Binaries | None = None,
        *,
        directory: Path | None = None,
        build: bool = False,
        operator_env: dict[str, str] | None = None,
    ) -> Stack:
        cluster = LocalCluster.start(binaries, directory=directory, build=build)
        # On failure, attach stops the cluster it owns.
        return cls.attach(cluster, operator_env=operator_env, owns_cluster=True)

    @classmethod
    def attach(
        cls,
        cluster: LocalCluster,
        *,
        namespaces: tuple[str, ...] = (),
        operator_env: dict[str, str] | None = None,
        owns_cluster: bool = False,
        operator_kubeconfig: Path | None = None,
    ) -> Stack:
        """The clouds and the operator around a running cluster; the operator watches
        `namespaces` (glob patterns) or all of them. On failure it stops what it started, and the
        cluster if it owns it."""
        try:
            clouds = LocalClouds.start(cluster.plane.directory / "clouds")
        except BaseException:
            if owns_cluster:
                cluster.stop()
            raise
        stack = cls(
            cluster, clouds, owns_cluster=owns_cluster, namespaces=namespaces, operator_kubeconfig=operator_kubeconfig
        )
        try:
            stack.start_operator(operator_env or {})
        except BaseException:
            stack.stop()
            raise
        return stack

    @property
    def kubeconfig(self) -> Path:
        return self.cluster.kubeconfig

    @property
    def operator_log(self) -> Path:
        return self.cluster.plane.logs("operator")

    @property
    def aws(self) -> AwsApi:
        """The project's AWS adapter on the local AWS, with the operator's credentials."""
        return AwsApi(endpoint_url=self.clouds.aws_endpoint, credentials=CREDENTIALS)

    def operator_environment(self, extra: dict[str, str]) -> dict[str, str]:
        clouds = ("AWS_", "GOLDENIMAGE_", "GOOGLE_", "AZURE_", "ARM_", "HTTPS_PROXY", "HTTP_PROXY", "https_", "http_")
        env = {k: v for k, v in os.environ.items() if not k.startswith(clouds)}
        return {
            **env,
            **self.clouds.operator_env(),
            "KUBECONFIG": str(self.operator_kubeconfig or self.kubeconfig),
            "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}",
            "GOLDENIMAGE_RUNNER_COMMAND": str(BIN / "goldenimage-runner"),
            "GOLDENIMAGE_RUNNER_IMAGE": "local/goldenimage-runner",
            "GOLDENIMAGE_RUNNER_ENV": json.dumps(self.clouds.runner_env()),
            "GOLDENIMAGE_RETRY_BASE_SECONDS": "1",
            # Validation checks reach only the machines of the lab.
            "GOLDENIMAGE_VALIDATION_NETWORKS": str(self.clouds.lab.network),
            "GOLDENIMAGE_RESYNC_SECONDS": "5",
            **extra,
        }

    def start_operator(self, extra: dict[str, str]) -> None:
        self.health_port = free_port()
        self.operator = processes.spawn(
            [
                str(BIN / "goldenimage"),
                "operator",
                "--verbose",
                f"--liveness=http://127.0.0.1:{self.health_port}/healthz",
                *(f"--namespace={n}" for n in self.namespaces),
            ],
            log=self.operator_log,
            env=self.operator_environment(extra),
        )
        processes.wait_until(self._operator_ready, timeout=60, interval=0.2, what="the operator to start")

    def _operator_ready(self) -> bool:
        processes.raise_if_exited("the operator", self.operator, self.operator_log)
        return http_ok(f"http://127.0.0.1:{self.health_port}/healthz")

    def stop_operator(self) -> None:
        if self.operator is not None:
            processes.stop(self.operator, grace=20)
            self.operator = None

    @property
    def pids(self) -> list[int]:
        return [*self.cluster.pids, *([self.operator.pid] if self.operator is not None else [])]

    def stop(self) -> None:
        self.stop_operator()
        self.clouds.stop()
        if self.owns_cluster:
            self.cluster.stop()
