"""The local pod executor: test and demo infrastructure standing in for a kubelet.

It registers a Node, binds pending Pods that carry the selected labels to it, and runs each
Pod's container command as a local process (see podspec.py for how the container is prepared).
It reports the Pod through Running to Succeeded or Failed with the real exit code and the
termination message, and on deletion sends SIGTERM, then SIGKILL after the grace period. Every
process of a container carries CONTAINER_ENV in its environment: when the main process exits or
is killed, they all go, as they would with the container's cgroup. The real Job controller then
decides Complete or Failed. `kubectl logs` works through a small kubelet-style log endpoint on
127.0.0.1.

    python -m goldenimage_dev.executor --kubeconfig KUBECONFIG --work-dir DIR
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import http.server
import json
import logging
import os
import queue
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException

from . import pki, podspec, processes

log = logging.getLogger("goldenimage.executor")

DEFAULT_SELECTOR = "app.kubernetes.io/managed-by=goldenimage-operator"
MESSAGE_LIMIT = 4096  # the kubelet's cap on a container's termination message
RESYNC_SECONDS = 2.0
CONTAINER_ENV = "GOLDENIMAGE_LOCAL_POD_UID"
REPORT_RETRY_SECONDS = 1.0

T = TypeVar("T")


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _unless_missing(read: Callable[..., T], *args: Any, **kwargs: Any) -> T | None:
    """`read(*args, **kwargs)`, or None when the API server answers 404."""
    try:
        return read(*args, **kwargs)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def _tail(path: Path, *, start: int = 0, end: int | None = None) -> str:
    """Part of a file as text; empty when the file is gone."""
    try:
        return path.read_bytes()[start:end].decode(errors="replace")
    except OSError:
        return ""


@dataclass
class LocalPod:
    namespace: str
    name: str
    uid: str
    container: str
    directory: Path
    process: subprocess.Popen[bytes]
    prepared: podspec.Prepared
    started_at: str
    deadline: float | None
    grace: int  # terminationGracePeriodSeconds
    fallback_to_logs: bool  # terminationMessagePolicy: FallbackToLogsOnError
    kill_at: float | None = None
    reason: str | None = None  # why the executor stopped it, if it did
    exit: tuple[int, str] | None = None  # (code, message) once exited, until reported
    report_at: float = 0.0  # when to try reporting the exit again after a failure

    @property
    def log_path(self) -> Path:
        return self.directory / "container.log"


def _describe(exc: Exception) -> str:
    return str(exc) if isinstance(exc, podspec.PodSpecError) else f"{type(exc).__name__}: {exc}"


class Executor:
    def __init__(self, core: client.CoreV1Api, node: str, root: Path, selector: str, log_port: int = 0) -> None:
        self.core = core
        self.node = node
        self.root = root
        self.selector = selector
        self.log_port = log_port
        # uid -> pod. The main thread changes them under the lock; the log server reads them.
        self.running: dict[str, LocalPod] = {}
        self.finished: dict[str, LocalPod] = {}  # exited and reported (or gone): for logs
        self.lock = threading.Lock()
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.base_env = {k: os.environ[k] for k in ("PATH", "LANG", "LC_ALL", "TZ") if k in os.environ}

    # -- node ------------------------------------------------------------------------------

    def register_node(self) -> None:
        body = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": self.node,
                "labels": {"kubernetes.io/hostname": self.node, "goldenimage.io/local-executor": "true"},
            },
        }
        with contextlib.suppress(ApiException):
            self.core.create_node(body)
        status = {
            "status": {
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "True",
                        "reason": "LocalExecutorReady",
                        "message": "local pod executor is running",
                        "lastHeartbeatTime": _now(),
                        "lastTransitionTime": _now(),
                    }
                ],
                "addresses": [
                    {"type": "InternalIP", "address": "127.0.0.1"},
                    {"type": "Hostname", "address": self.node},
                ],
                "capacity": {"cpu": "4", "memory": "16Gi", "pods": "110"},
                "allocatable": {"cpu": "4", "memory": "16Gi", "pods": "110"},
                "daemonEndpoints": {"kubeletEndpoint": {"Port": self.log_port}},
                "nodeInfo": {
                    "architecture": "amd64",
                    "operatingSystem": "linux",
                    "kubeletVersion": "local-executor",
                    "kubeProxyVersion": "",
                    "containerRuntimeVersion": "local://processes",
                    "kernelVersion": os.uname().release,
                    "osImage": "local",
                    "machineID": "",
                    "systemUUID": "",
                    "bootID": "",
                },
            }
        }
        self.core.patch_node_status(self.node, status)

    # -- main loop -------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        self.register_node()
        threading.Thread(target=self._watch, args=(stop,), daemon=True, name="pod-watch").start()
        last_resync = 0.0
        while not stop.is_set():
            with contextlib.suppress(queue.Empty):
                pod = self.events.get(timeout=0.1)
                self._safely(self.reconcile, pod)
            if time.monotonic() - last_resync > RESYNC_SECONDS:
                last_resync = time.monotonic()
                with contextlib.suppress(Exception):
                    for pod in self._list():
                        self._safely(self.reconcile, pod)
            self._safely(self.poll)
        self.shutdown()

    def _safely(self, fn: Any, *args: Any) -> None:
        try:
            fn(*args)
        except ApiException as exc:
            if exc.status not in (404, 409):
                log.warning("API error in %s: %s %s", fn.__name__, exc.status, exc.reason)
        except Exception:
            log.exception("error in %s", fn.__name__)

    def _list(self) -> list[dict[str, Any]]:
        response = self.core.list_pod_for_all_namespaces(label_selector=self.selector, _preload_content=False)
        items: list[dict[str, Any]] = json.loads(response.data)["items"]
        return items

    def _watch(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                for event in watch.Watch().stream(
                    self.core.list_pod_for_all_namespaces, label_selector=self.selector, timeout_seconds=30
                ):
                    self.events.put(event["raw_object"])
                    if stop.is_set():
                        return
            except Exception as exc:  # the periodic resync covers what a broken watch misses
                log.debug("pod watch restarts: %s", exc)
                stop.wait(0.5)

    # -- reconciling one pod ---------------------------------------------------------------

    def reconcile(self, pod: dict[str, Any]) -> None:
        meta, spec = pod["metadata"], pod["spec"]
        uid = meta["uid"]
        node = spec.get("nodeName")
        if not node:
            if not meta.get("deletionTimestamp"):
                self._bind(pod)
            return
        if node != self.node:
            return
        local = self.running.get(uid)
        if meta.get("deletionTimestamp"):
            if local is None:
                phase = pod.get("status", {}).get("phase", "Pending")
                if phase in ("Pending", "Running") and uid not in self.finished:
                    # Marked for deletion with no process here (never started, or lost in a
                    # restart): like a kubelet, report the container ended before letting it go,
                    # since a finalizer may keep the Pod and someone read its status.
                    self._report_exit(pod, exit_code=137, reason="Killed", message="")
                self._delete_now(pod)
            elif local.kill_at is None:
                self._terminate(local, meta.get("deletionGracePeriodSeconds", local.grace), reason=None)
            return
        phase = pod.get("status", {}).get("phase", "Pending")
        if phase == "Pending" and local is None and uid not in self.finished:
            self._start(pod)
        elif phase == "Running" and local is None and uid not in self.finished:
            # Running on this node without a process: the executor restarted and lost it.
            self._report_exit(
                pod, exit_code=137, reason="ExecutorRestarted", message="the local pod executor restarted"
            )

    def _bind(self, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        body = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": meta["name"], "namespace": meta["namespace"], "uid": meta["uid"]},
            "target": {"apiVersion": "v1", "kind": "Node", "name": self.node},
        }
        self.core.create_namespaced_binding(meta["namespace"], body, _preload_content=False)

    def _read_config_map(self, namespace: str, name: str) -> dict[str, bytes] | None:
        cm = _unless_missing(self.core.read_namespaced_config_map, name, namespace)
        return None if cm is None else podspec.config_map_data(cm.data, cm.binary_data)

    def _read_secret(self, namespace: str, name: str) -> dict[str, bytes] | None:
        secret = _unless_missing(self.core.read_namespaced_secret, name, namespace)
        return None if secret is None else podspec.secret_data(secret.data)

    def _start(self, pod: dict[str, Any]) -> None:
        meta, spec = pod["metadata"], pod["spec"]
        container = spec["containers"][0]
        # Short paths: programs put Unix sockets under the pod's directories (108-byte limit).
        directory = self.root / meta["uid"].replace("-", "")[:12]
        directory.mkdir(parents=True, exist_ok=True)
        try:
            prepared = podspec.prepare(
                pod,
                directory,
                read_config_map=self._read_config_map,
                read_secret=self._read_secret,
                base_env=self.base_env,
            )
        except podspec.UnsupportedError as exc:
            self._report_exit(pod, exit_code=128, reason="UnsupportedByLocalExecutor", message=str(exc))
            return
        except Exception as exc:
            # Like a kubelet: the pod waits and the next resync tries again.
            message = _describe(exc)
            if self._wait(pod, "CreateContainerConfigError", message):
                log.warning("%s/%s cannot start yet: %s", meta["namespace"], meta["name"], message)
            return
        try:
            process = processes.spawn(
                prepared.argv,
                log=directory / "container.log",
                env={**prepared.env, CONTAINER_ENV: meta["uid"]},
                cwd=prepared.cwd,
            )
        except Exception as exc:
            self._report_exit(pod, exit_code=128, reason="StartError", message=_describe(exc))
            return
        local = LocalPod(
            namespace=meta["namespace"],
            name=meta["name"],
            uid=meta["uid"],
            container=container["name"],
            directory=directory,
            process=process,
            prepared=prepared,
            started_at=_now(),
            deadline=time.monotonic() + spec["activeDeadlineSeconds"] if spec.get("activeDeadlineSeconds") else None,
            grace=spec.get("terminationGracePeriodSeconds", 30),
            fallback_to_logs=container.get("terminationMessagePolicy") == "FallbackToLogsOnError",
        )
        with self.lock:
            self.running[local.uid] = local
        log.info("started %s/%s as pid %d: %s", local.namespace, local.name, local.process.pid, prepared.argv)
        self._patch_status(pod, {"status": self._running_status(pod, local)})

    def _terminate(self, local: LocalPod, grace: int, reason: str | None) -> None:
        """SIGTERM the container's main process, as the kubelet does; SIGKILL follows in poll()."""
        log.info("stopping %s/%s (grace %ss)", local.namespace, local.name, grace)
        local.reason = reason
        with contextlib.suppress(ProcessLookupError):
            local.process.send_signal(signal.SIGTERM)
        local.kill_at = time.monotonic() + max(grace, 0)

    # -- processes -------------------------------------------------------------------------

    def poll(self) -> None:
        now = time.monotonic()
        for local in list(self.running.values()):
            if local.exit is None:
                code = local.process.poll()
                if code is None:
                    if local.kill_at is not None and now >= local.kill_at:
                        processes.kill_tagged(CONTAINER_ENV, local.uid)
                    elif local.deadline is not None and now >= local.deadline and local.kill_at is None:
                        self._terminate(local, local.grace, reason="DeadlineExceeded")
                    continue
                # The container is gone: nothing of it may outlive its main process, not even
                # what started a session of its own.
                processes.kill_tagged(CONTAINER_ENV, local.uid)
                local.exit = self._exit(local, code)
                log.info("%s/%s exited with %d", local.namespace, local.name, local.exit[0])
            if now >= local.report_at:
                self._safely(self._finish, local)

    def _exit(self, local: LocalPod, code: int) -> tuple[int, str]:
        exit_code = code if code >= 0 else 128 - code
        message = _tail(local.prepared.termination_log, end=MESSAGE_LIMIT)
        if not message and exit_code != 0 and local.fallback_to_logs:
            message = _tail(local.log_path, start=-2048)
        return exit_code, message

    def _finish(self, local: LocalPod) -> None:
        """Report an exited container's exit; it stays running (and is tried again) until then."""
        assert local.exit is not None
        local.report_at = time.monotonic() + REPORT_RETRY_SECONDS
        pod = self._read_pod(local)
        if pod is not None:
            code, message = local.exit
            self._report_exit(pod, exit_code=code, reason=local.reason, message=message, local=local)
        with self.lock:
            self.running.pop(local.uid, None)
            self.finished[local.uid] = local
        if pod is not None and pod["metadata"].get("deletionTimestamp"):
            self._delete_now(pod)

    def _read_pod(self, local: LocalPod) -> dict[str, Any] | None:
        response = _unless_missing(self.core.read_namespaced_pod, local.name, local.namespace, _preload_content=False)
        if response is None:
            return None
        pod: dict[str, Any] = json.loads(response.data)
        return pod if pod["metadata"]["uid"] == local.uid else None

    def shutdown(self) -> None:
        with self.lock:
            stopping = list(self.running.values())
            self.running.clear()
        for local in stopping:
            with contextlib.suppress(ProcessLookupError):
                local.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 5
        for local in stopping:
            with contextlib.suppress(subprocess.TimeoutExpired):
                local.process.wait(timeout=max(0.0, deadline - time.monotonic()))
            processes.kill_tagged(CONTAINER_ENV, local.uid)

    # -- status ----------------------------------------------------------------------------

    def _container_status(self, pod: Mapping[str, Any], state: dict[str, Any], *, ready: bool) -> dict[str, Any]:
        container = pod["spec"]["containers"][0]
        return {
            "name": container["name"],
            "image": container.get("image", ""),
            "imageID": "",
            "containerID": f"local://{pod['metadata']['uid']}",
            "ready": ready,
            "started": "running" in state,
            "restartCount": 0,
            "state": state,
        }

    def _conditions(self, *, ready: bool) -> list[dict[str, Any]]:
        now = _now()
        flag = "True" if ready else "False"
        return [
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
            {"type": "Initialized", "status": "True", "lastTransitionTime": now},
            {"type": "ContainersReady", "status": flag, "lastTransitionTime": now},
            {"type": "Ready", "status": flag, "lastTransitionTime": now},
        ]

    def _waiting_status(self, pod: Mapping[str, Any], reason: str, message: str) -> dict[str, Any]:
        state = {"waiting": {"reason": reason, "message": message}}
        return {
            "phase": "Pending",
            "hostIP": "127.0.0.1",
            "conditions": self._conditions(ready=False),
            "containerStatuses": [self._container_status(pod, state, ready=False)],
        }

    def _running_status(self, pod: Mapping[str, Any], local: LocalPod) -> dict[str, Any]:
        state = {"running": {"startedAt": local.started_at}}
        return {
            "phase": "Running",
            "hostIP": "127.0.0.1",
            "hostIPs": [{"ip": "127.0.0.1"}],
            "podIP": "127.0.0.1",
            "podIPs": [{"ip": "127.0.0.1"}],
            "startTime": local.started_at,
            "conditions": self._conditions(ready=True),
            "containerStatuses": [self._container_status(pod, state, ready=True)],
        }

    def _report_exit(
        self,
        pod: Mapping[str, Any],
        *,
        exit_code: int,
        reason: str | None,
        message: str,
        local: LocalPod | None = None,
    ) -> None:
        now = _now()
        terminated = {
            "exitCode": exit_code,
            "reason": reason or ("Completed" if exit_code == 0 else "Error"),
            "startedAt": local.started_at if local else now,
            "finishedAt": now,
            "containerID": f"local://{pod['metadata']['uid']}",
        }
        if message:
            terminated["message"] = message
        status: dict[str, Any] = {
            "phase": "Succeeded" if exit_code == 0 else "Failed",
            "hostIP": "127.0.0.1",
            "conditions": self._conditions(ready=False),
            "containerStatuses": [self._container_status(pod, {"terminated": terminated}, ready=False)],
        }
        if reason == "DeadlineExceeded":
            status["reason"] = "DeadlineExceeded"
            status["message"] = "Pod was active on the node longer than the specified deadline"
        self._patch_status(pod, {"status": status})

    def _wait(self, pod: Mapping[str, Any], reason: str, message: str) -> bool:
        """Report the container waiting, unless the pod already says so (an unchanged patch
        would still bring new transition times, a watch event and another attempt at once);
        whether it reported."""
        statuses = pod.get("status", {}).get("containerStatuses") or [{}]
        if statuses[0].get("state", {}).get("waiting") == {"reason": reason, "message": message}:
            return False
        self._patch_status(pod, {"status": self._waiting_status(pod, reason, message)})
        return True

    def _patch_status(self, pod: Mapping[str, Any], body: dict[str, Any]) -> None:
        meta = pod["metadata"]
        self.core.patch_namespaced_pod_status(meta["name"], meta["namespace"], body)

    def _delete_now(self, pod: Mapping[str, Any]) -> None:
        """The kubelet's final deletion once the containers are gone. A Pod already asked for
        (grace period 0) and kept by a finalizer goes when its finalizers do: asking again would
        only repeat, at every resync."""
        meta = pod["metadata"]
        if meta.get("deletionGracePeriodSeconds") == 0 and meta.get("finalizers"):
            return
        body = client.V1DeleteOptions(grace_period_seconds=0, preconditions=client.V1Preconditions(uid=meta["uid"]))
        self.core.delete_namespaced_pod(meta["name"], meta["namespace"], body=body)

    # -- logs ------------------------------------------------------------------------------

    def log_file(self, namespace: str, name: str) -> tuple[Path, LocalPod | None] | None:
        """The log of a pod on this node, and the pod while its container runs (for following)."""
        with self.lock:
            running, finished = list(self.running.values()), list(self.finished.values())
        for local in running:
            if (local.namespace, local.name) == (namespace, name):
                return local.log_path, local
        for local in finished:
            if (local.namespace, local.name) == (namespace, name):
                return local.log_path, None
        return None


class _LogHandler(http.server.BaseHTTPRequestHandler):
    executor: Executor

    def do_GET(self) -> None:
        url = urllib.parse.urlparse(self.path)
        parts = url.path.strip("/").split("/")
        if len(parts) != 4 or parts[0] != "containerLogs":
            self.send_error(404)
            return
        found = self.executor.log_file(parts[1], parts[2])
        if found is None:
            self.send_error(404, "pod not found on this node")
            return
        path, local = found
        query = urllib.parse.parse_qs(url.query)
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        for chunk in _follow(path, local, follow=query.get("follow") == ["true"]):
            self.wfile.write(chunk)
            self.wfile.flush()

    def log_message(self, format: str, *args: Any) -> None:
        log.debug(format, *args)


def _follow(path: Path, local: LocalPod | None, *, follow: bool) -> Iterator[bytes]:
    with path.open("rb") as f:
        while True:
            chunk = f.read(65536)
            if chunk:
                yield chunk
                continue
            if not follow or local is None or local.process.poll() is not None:
                return
            time.sleep(0.2)


def serve_logs(executor: Executor, directory: Path, serving: pki.Pair | None = None) -> int:
    """Start the kubelet-style log endpoint; returns its port.

    The API server verifies it with the CA of `serving` (the control plane issues one); without
    it a throwaway CA signs the certificate and `kubectl logs` needs --insecure-skip-tls-verify-backend.
    """
    if serving is None:
        ca = pki.CertificateAuthority(directory)
        serving = ca.issue(
            "kubelet", executor.node, server_names=(executor.node, "localhost"), server_ips=("127.0.0.1",)
        )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(serving.cert), str(serving.key))
    handler = type("Handler", (_LogHandler,), {"executor": executor})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True, name="log-server").start()
    return int(server.server_address[1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m goldenimage_dev.executor", description=__doc__.splitlines()[0])
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--node-name", default="local-executor")
    parser.add_argument("--work-dir", type=Path, default=None)
    parser.add_argument("--selector", default=DEFAULT_SELECTOR, help="label selector of the pods to run")
    parser.add_argument("--serving-cert", type=Path, help="certificate of the log endpoint")
    parser.add_argument("--serving-key", type=Path, help="key of the log endpoint")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    if (args.serving_cert is None) != (args.serving_key is None):
        parser.error("--serving-cert and --serving-key go together")
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(levelname)s %(message)s"
    )
    root = args.work_dir or Path(tempfile.mkdtemp(prefix="goldenimage-executor-"))
    root.mkdir(parents=True, exist_ok=True)
    # Pods get their directories under a short root whatever the work directory is: programs put
    # Unix sockets there, whose paths may not exceed 108 bytes. The work directory links to it.
    pods = Path(tempfile.mkdtemp(prefix="gi-pods-", dir="/tmp" if Path("/tmp").is_dir() else None))
    link = root / "p"
    link.unlink(missing_ok=True)
    link.symlink_to(pods, target_is_directory=True)
    api = config.new_client_from_config(config_file=args.kubeconfig)
    executor = Executor(client.CoreV1Api(api), args.node_name, pods, args.selector)
    serving = pki.Pair(args.serving_cert, args.serving_key) if args.serving_cert else None
    executor.log_port = serve_logs(executor, root, serving)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    log.info("local pod executor: node %s, pods labelled %s, work dir %s", args.node_name, args.selector, root)
    try:
        executor.run(stop)
    finally:
        shutil.rmtree(pods, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
