"""A real local Kubernetes control plane: etcd, kube-apiserver and kube-controller-manager on
127.0.0.1, with generated certificates and an admin kubeconfig. For tests and the local demo.

    with ControlPlane.start() as cp:
        cp.kubectl("get", "namespaces")
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml

from . import pki, processes
from .binaries import Binaries, find

# Controllers a test or demo cluster needs: Jobs and their Pods, garbage collection through owner
# references, namespace deletion, service accounts and TTL clean-up. Node lifecycle stays off:
# the local pod executor's node has no kubelet heartbeat to keep it Ready.
CONTROLLERS = (
    "job-controller",
    "garbage-collector-controller",
    "namespace-controller",
    "serviceaccount-controller",
    "serviceaccount-token-controller",
    "root-ca-certificate-publisher-controller",
    "ttl-after-finished-controller",
    "cronjob-controller",
)


class KubectlError(subprocess.CalledProcessError):
    """A failed kubectl command, whose message ends with what kubectl said."""

    def __str__(self) -> str:
        return f"{super().__str__()}\n{(self.stderr or '').strip()}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ControlPlane:
    directory: Path
    binaries: Binaries
    api_port: int = 0
    kubeconfig: Path = field(init=False)
    _processes: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)
    _owns_directory: bool = True
    _ca: Path | None = None
    _admin: pki.Pair | None = None
    kubelet_serving: pki.Pair | None = None

    def __post_init__(self) -> None:
        self.kubeconfig = self.directory / "kubeconfig"

    # -- lifecycle -------------------------------------------------------------------------

    @classmethod
    def start(
        cls, *, directory: Path | None = None, binaries: Binaries | None = None, build: bool = False
    ) -> ControlPlane:
        """Start etcd, the API server and the controller manager; stops what started on failure."""
        owns = directory is None
        # Absolute: the executor maps pod paths onto it, and processes run in other directories.
        root = Path(tempfile.mkdtemp(prefix="goldenimage-cp-")) if directory is None else directory.absolute()
        root.mkdir(parents=True, exist_ok=True)
        plane = cls(directory=root, binaries=binaries or find(build=build), _owns_directory=owns)
        try:
            plane._start()
        except BaseException:
            plane.stop()
            raise
        return plane

    def _start(self) -> None:
        certs = self.directory / "pki"
        certs.mkdir(exist_ok=True)
        ca = pki.CertificateAuthority(certs)
        self._ca = ca.cert_path
        serving = ca.issue(
            "apiserver",
            "kube-apiserver",
            server_names=("localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"),
            server_ips=("127.0.0.1", "10.0.0.1"),
        )
        self._admin = ca.issue("admin", "goldenimage-admin", organizations=("system:masters",))
        kcm = ca.issue("controller-manager", "system:kube-controller-manager")
        # For the local pod executor's log endpoint, which the API server calls like a kubelet.
        self.kubelet_serving = ca.issue(
            "kubelet", "local-executor", server_names=("localhost",), server_ips=("127.0.0.1",)
        )
        sa = pki.service_account_keys(certs)

        etcd_port, peer_port = free_port(), free_port()
        self.api_port = self.api_port or free_port()
        etcd_url = f"http://127.0.0.1:{etcd_port}"
        self._run(
            "etcd",
            [
                str(self.binaries.etcd),
                "--name=default",
                f"--data-dir={self.directory / 'etcd'}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls=http://127.0.0.1:{peer_port}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}",
                f"--initial-cluster=default=http://127.0.0.1:{peer_port}",
                "--unsafe-no-fsync",  # a throwaway store: durability costs seconds per test
                "--log-level=warn",
            ],
        )
        processes.wait_until(lambda: http_ok(f"{etcd_url}/health"), timeout=30, what="etcd to become healthy")

        self._run(
            "kube-apiserver",
            [
                str(self.binaries.kube_apiserver),
                f"--etcd-servers={etcd_url}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={self.api_port}",
                f"--tls-cert-file={serving.cert}",
                f"--tls-private-key-file={serving.key}",
                f"--client-ca-file={ca.cert_path}",
                "--authorization-mode=RBAC",
                "--service-cluster-ip-range=10.0.0.0/24",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={sa.cert}",
                f"--service-account-signing-key-file={sa.key}",
                "--endpoint-reconciler-type=none",
                f"--kubelet-certificate-authority={ca.cert_path}",
                "--kubelet-preferred-address-types=InternalIP",
                f"--cert-dir={certs}",
                "--v=1",
            ],
        )
        processes.wait_until(self._api_ready, timeout=120, what="kube-apiserver to become ready")
        self._write_kubeconfig(self.kubeconfig, self._admin)
        kcm_config = self.directory / "controller-manager.kubeconfig"
        self._write_kubeconfig(kcm_config, kcm)

        self._run(
            "kube-controller-manager",
            [
                str(self.binaries.kube_controller_manager),
                f"--kubeconfig={kcm_config}",
                "--bind-address=127.0.0.1",
                f"--secure-port={free_port()}",
                "--leader-elect=false",
                # Each controller acts as its own service account, with the bootstrap RBAC roles.
                "--use-service-account-credentials=true",
                f"--controllers={','.join(CONTROLLERS)}",
                f"--service-account-private-key-file={sa.key}",
                f"--root-ca-file={ca.cert_path}",
                "--concurrent-job-syncs=10",
                "--v=1",
            ],
        )
        # The service-account controller creating `default` proves the controllers are working.
        processes.wait_until(
            lambda: self.kubectl("get", "serviceaccount", "default", "-n", "default", check=False).returncode == 0,
            timeout=60,
            interval=0.25,
            what="kube-controller-manager to create the default service account",
        )

    def stop(self) -> None:
        """Stop every process by PID (newest first) and remove the files; safe to call twice."""
        while self._processes:
            _name, process = self._processes.pop()
            processes.stop(process)
        if self._owns_directory and os.environ.get("GOLDENIMAGE_KEEP_CONTROL_PLANE") != "1":
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> ControlPlane:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.stop()

    # -- use -------------------------------------------------------------------------------

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.api_port}"

    @property
    def pids(self) -> list[int]:
        return [p.pid for _, p in self._processes]

    def logs(self, name: str) -> Path:
        return self.directory / "logs" / f"{name}.log"

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(self.binaries.kubectl), f"--kubeconfig={self.kubeconfig}", *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise KubectlError(result.returncode, result.args, result.stdout, result.stderr)
        return result

    def kubectl_json(self, *args: str) -> Any:
        return json.loads(self.kubectl(*args, "-o", "json").stdout)

    # -- internals -------------------------------------------------------------------------

    def _run(self, name: str, argv: list[str]) -> None:
        process = processes.spawn(argv, log=self.logs(name))
        self._processes.append((name, process))

    def _api_ready(self) -> bool:
        for name, process in self._processes:
            processes.raise_if_exited(name, process, self.logs(name))
        assert self._admin is not None and self._ca is not None
        context = ssl.create_default_context(cafile=str(self._ca))
        context.load_cert_chain(str(self._admin.cert), str(self._admin.key))
        return http_ok(f"{self.server}/readyz", context)

    def _write_kubeconfig(self, path: Path, client: pki.Pair) -> None:
        assert self._ca is not None

        def b64(p: Path) -> str:
            return base64.b64encode(p.read_bytes()).decode()

        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "local",
                    "cluster": {"server": self.server, "certificate-authority-data": b64(self._ca)},
                }
            ],
            "users": [
                {
                    "name": "local",
                    "user": {"client-certificate-data": b64(client.cert), "client-key-data": b64(client.key)},
                }
            ],
            "contexts": [{"name": "local", "context": {"cluster": "local", "user": "local", "namespace": "default"}}],
            "current-context": "local",
        }
        path.write_text(yaml.safe_dump(config))
        path.chmod(0o600)


def http_ok(url: str, context: ssl.SSLContext | None = None) -> bool:
    """Whether `url` answers 200 (within 2 seconds); False while nothing listens."""
    with (
        contextlib.suppress(urllib.error.URLError, OSError),
        urllib.request.urlopen(url, timeout=2, context=context) as r,
    ):
        return bool(r.status == 200)
    return False
