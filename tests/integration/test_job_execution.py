"""Jobs on the real control plane: the Job controller creates Pods, the local pod executor runs
them as processes, and the garbage collector follows owner references."""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from goldenimage_dev import processes
from goldenimage_dev.executor import CONTAINER_ENV
from support import polling, procs
from support.cluster import Cluster, condition_of

pytestmark = pytest.mark.integration

LABELS = {"app.kubernetes.io/managed-by": "goldenimage-operator"}


def job(name: str, code: str, env: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "labels": LABELS},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "metadata": {"labels": LABELS},
                "spec": {
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": False,
                    "containers": [
                        {
                            "name": "main",
                            "image": "python:3.11",
                            "command": [sys.executable, "-c", code],
                            # Programs find pod paths through the pod spec, never hard-coded.
                            "env": [
                                {"name": "RESULT", "value": "/dev/termination-log"},
                                *({"name": k, "value": v} for k, v in (env or {}).items()),
                            ],
                        }
                    ],
                    **spec.pop("pod", {}),
                },
            },
            **spec,
        },
    }


def condition(cluster: Cluster, namespace: str, name: str, type_: str) -> dict[str, Any] | None:
    """The Job's condition of `type_` once it is True."""
    found = condition_of(cluster.get("job", name, "-n", namespace), type_)
    return found if found and found["status"] == "True" else None


def wait_complete(cluster: Cluster, namespace: str, name: str) -> None:
    """Wait for the Job to complete; if it fails instead, say why with its pod's log."""

    def done() -> str | None:
        for type_ in ("Complete", "Failed"):
            if condition(cluster, namespace, name, type_):
                return type_
        return None

    outcome = polling.until(done, timeout=60, what=f"Job {name} to finish")
    if outcome == "Failed":
        logs = cluster.kubectl("logs", "-n", namespace, f"job/{name}", check=False)
        raise AssertionError(f"Job {name} failed:\n{logs.stdout}{logs.stderr}")


def pods(cluster: Cluster, namespace: str, job_name: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = cluster.get("pods", "-n", namespace, "-l", f"job-name={job_name}")["items"]
    return items


def test_job_completes(executor: Cluster, namespace: str) -> None:
    executor.apply(job("hello", "print(1)"), namespace)
    wait_complete(executor, namespace, "hello")
    (pod,) = pods(executor, namespace, "hello")
    assert pod["status"]["phase"] == "Succeeded"
    assert pod["spec"]["nodeName"] == "local-executor"
    terminated = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert terminated["exitCode"] == 0 and terminated["reason"] == "Completed"
    # kubectl logs reaches the executor's log endpoint through the API server, as with a kubelet.
    assert executor.kubectl("logs", "-n", namespace, "job/hello").stdout == "1\n"


def test_failing_job_fails_without_retry_and_keeps_its_termination_message(executor: Cluster, namespace: str) -> None:
    code = "import os, sys; open(os.environ['RESULT'], 'w').write('{\"result\": \"boom\"}'); sys.exit(3)"
    executor.apply(job("fails", code), namespace)
    failed = polling.until(lambda: condition(executor, namespace, "fails", "Failed"), timeout=60, what="Job to fail")
    assert failed["reason"] == "BackoffLimitExceeded"
    (pod,) = pods(executor, namespace, "fails")  # backoffLimit 0: no second pod
    terminated = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert terminated["exitCode"] == 3
    assert json.loads(terminated["message"]) == {"result": "boom"}


def test_volumes_env_and_paths_follow_the_pod_spec(executor: Cluster, namespace: str) -> None:
    executor.kubectl("create", "configmap", "tpl", "-n", namespace, "--from-literal=main.pkr.hcl=source {}")
    executor.kubectl("create", "secret", "generic", "creds", "-n", namespace, "--from-literal=token=s3cret")
    code = (
        "import os, json;"
        "open(os.environ['OUT'] + '/copy', 'w').write(open(os.environ['TEMPLATE']).read());"
        "open(os.environ['RESULT'], 'w').write(json.dumps({"
        "'template': open(os.environ['TEMPLATE']).read(), 'token': os.environ['TOKEN'],"
        "'pod': os.environ['POD'], 'copied': open(os.environ['OUT'] + '/copy').read(),"
        "'expanded': os.environ['EXPANDED']}))"
    )
    manifest = job(
        "paths",
        code,
        pod={
            "volumes": [
                {"name": "tpl", "configMap": {"name": "tpl"}},
                {"name": "work", "emptyDir": {}},
            ],
        },
    )
    container = manifest["spec"]["template"]["spec"]["containers"][0]
    container["volumeMounts"] = [
        {"name": "tpl", "mountPath": "/etc/tpl", "readOnly": True},
        {"name": "work", "mountPath": "/work"},
    ]
    container["env"] = [
        *container["env"],
        {"name": "TEMPLATE", "value": "/etc/tpl/main.pkr.hcl"},
        {"name": "OUT", "value": "/work/out"},
        {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}},
        {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "EXPANDED", "value": "$(OUT)/x"},
    ]
    container["command"] = [sys.executable, "-c", "import os; os.makedirs(os.environ['OUT']); " + code]
    executor.apply(manifest, namespace)
    wait_complete(executor, namespace, "paths")
    (pod,) = pods(executor, namespace, "paths")
    result = json.loads(pod["status"]["containerStatuses"][0]["state"]["terminated"]["message"])
    assert result["template"] == result["copied"] == "source {}"
    assert result["token"] == "s3cret"
    assert result["pod"] == pod["metadata"]["name"]
    assert result["expanded"].endswith("/out/x")


def test_missing_config_map_keeps_the_pod_waiting(executor: Cluster, namespace: str) -> None:
    manifest = job("waits", "print(1)", pod={"volumes": [{"name": "tpl", "configMap": {"name": "absent"}}]})
    manifest["spec"]["template"]["spec"]["containers"][0]["volumeMounts"] = [{"name": "tpl", "mountPath": "/etc/tpl"}]
    executor.apply(manifest, namespace)

    def waiting() -> dict[str, Any] | None:
        for pod in pods(executor, namespace, "waits"):
            for status in pod.get("status", {}).get("containerStatuses", []):
                if "waiting" in status["state"]:
                    return dict(status["state"]["waiting"])
        return None

    state = polling.until(waiting, timeout=60, what="the pod to wait for its ConfigMap")
    assert state["reason"] == "CreateContainerConfigError"
    assert 'configmap "absent" not found' in state["message"]


def test_deleting_the_owner_collects_the_job_and_its_pods(executor: Cluster, namespace: str) -> None:
    executor.kubectl("create", "configmap", "owner", "-n", namespace)
    owner = executor.get("configmap", "owner", "-n", namespace)
    manifest = job("owned", "import time; time.sleep(600)")
    manifest["metadata"]["ownerReferences"] = [
        {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner["metadata"]["uid"]}
    ]
    executor.apply(manifest, namespace)
    polling.until(
        lambda: any(p["status"].get("phase") == "Running" for p in pods(executor, namespace, "owned")),
        timeout=60,
        what="the owned Job's pod to run",
    )
    executor.kubectl("delete", "configmap", "owner", "-n", namespace)
    polling.until(
        lambda: (
            executor.kubectl("get", "job", "owned", "-n", namespace, check=False).returncode != 0
            and not pods(executor, namespace, "owned")
        ),
        timeout=90,
        what="the garbage collector to delete the Job and its pods",
    )


def _running_pod(cluster: Cluster, namespace: str, job_name: str) -> dict[str, Any]:
    """The Job's pod once its process has said it is ready."""
    pod: dict[str, Any] = polling.until(
        lambda: next((p for p in pods(cluster, namespace, job_name) if p["status"].get("phase") == "Running"), None),
        timeout=60,
        what="the pod to run",
    )
    polling.until(
        lambda: "ready" in cluster.kubectl("logs", "-n", namespace, pod["metadata"]["name"]).stdout,
        timeout=30,
        what="the process to install its signal handler",
    )
    return pod


def _delete(cluster: Cluster, namespace: str, pod: dict[str, Any]) -> None:
    cluster.kubectl("delete", "pod", pod["metadata"]["name"], "-n", namespace, "--wait=false")


def test_deleting_a_pod_sends_sigterm_then_reports_the_exit(executor: Cluster, namespace: str, tmp_path: Path) -> None:
    # The executor runs pods as local processes, so a host path can report what they saw.
    code = (
        "import os, signal, sys, time\n"
        "def bye(*_):\n"
        "    open(os.environ['SIGNAL_FILE'], 'w').write('got SIGTERM'); sys.exit(143)\n"
        "signal.signal(signal.SIGTERM, bye)\n"
        "print('ready', flush=True)\n"
        "time.sleep(600)\n"
    )
    env = {"SIGNAL_FILE": str(tmp_path / "signal")}
    executor.apply(job("graceful", code, env=env, pod={"terminationGracePeriodSeconds": 30}), namespace)
    _delete(executor, namespace, _running_pod(executor, namespace, "graceful"))
    # The Job controller records the failure from the pod's final status.
    failed = polling.until(lambda: condition(executor, namespace, "graceful", "Failed"), timeout=60, what="Job to fail")
    assert failed["reason"] == "BackoffLimitExceeded"
    assert (tmp_path / "signal").read_text() == "got SIGTERM"


def test_sigkill_after_the_grace_period_takes_every_process_of_the_container(
    executor: Cluster, namespace: str, tmp_path: Path
) -> None:
    # Ignores SIGTERM and leaves a child in a session of its own, as Packer's runner does.
    code = (
        "import os, signal, subprocess, sys, time\n"
        "signal.signal(signal.SIGTERM, lambda *_: open(os.environ['SIGNAL_FILE'], 'w').write('ignored'))\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'], start_new_session=True)\n"
        "open(os.environ['CHILD_FILE'], 'w').write(str(child.pid))\n"
        "print('ready', flush=True)\n"
        "while True: time.sleep(1)\n"
    )
    env = {"SIGNAL_FILE": str(tmp_path / "signal"), "CHILD_FILE": str(tmp_path / "child")}
    executor.apply(job("stubborn", code, env=env, pod={"terminationGracePeriodSeconds": 2}), namespace)
    pod = _running_pod(executor, namespace, "stubborn")
    try:
        child = int(polling.until(lambda: (tmp_path / "child").read_text(), timeout=30, what="the child's pid"))
        assert procs.alive(child)
        assert child in procs.in_container(pod["metadata"]["uid"])
        _delete(executor, namespace, pod)
        polling.until(lambda: condition(executor, namespace, "stubborn", "Failed"), timeout=60, what="Job to fail")
        assert (tmp_path / "signal").read_text() == "ignored"
        polling.until(lambda: not procs.alive(child), timeout=10, what="the container's other process to be killed")
    finally:  # what the executor should have killed, when the test stopped early or it did not
        processes.kill_tagged(CONTAINER_ENV, pod["metadata"]["uid"])


# A finalizer such as the operator puts on its Jobs' Pods to keep their results.
HOLD = "goldenimage.io/result"


def _held(manifest: dict[str, Any]) -> dict[str, Any]:
    manifest["spec"]["template"]["metadata"]["finalizers"] = [HOLD]
    return manifest


def _release(cluster: Cluster, namespace: str, name: str) -> bool:
    """Remove HOLD from the pod, whatever other finalizers controllers add or remove meanwhile."""
    finalizers = cluster.get("pod", name, "-n", namespace)["metadata"].get("finalizers", [])
    if HOLD not in finalizers:
        return True
    at = f"/metadata/finalizers/{finalizers.index(HOLD)}"
    patch = json.dumps([{"op": "test", "path": at, "value": HOLD}, {"op": "remove", "path": at}])
    cluster.kubectl("patch", "pod", name, "-n", namespace, "--type=json", "-p", patch)
    return True


def _release_all(cluster: Cluster, namespace: str, job_name: str) -> None:
    """Let go of what a test that stopped early left held (it would hold up its namespace)."""
    for pod in pods(cluster, namespace, job_name):
        with contextlib.suppress(Exception):
            _release(cluster, namespace, pod["metadata"]["name"])


def _marked(cluster: Cluster, namespace: str, job_name: str) -> dict[str, Any] | None:
    """The Job's pod once it is marked for deletion and its container has ended."""
    for pod in pods(cluster, namespace, job_name):
        statuses = pod.get("status", {}).get("containerStatuses") or [{}]
        if pod["metadata"].get("deletionTimestamp") and "terminated" in statuses[0].get("state", {}):
            return pod
    return None


def test_a_job_its_ttl_removes_waits_while_a_finalizer_keeps_its_pod_and_result(
    executor: Cluster, namespace: str, request: pytest.FixtureRequest
) -> None:
    code = "import os; open(os.environ['RESULT'], 'w').write('{\"artifact\": \"ami-1\"}')"
    executor.apply(_held(job("ttl", code, ttlSecondsAfterFinished=0)), namespace)
    request.addfinalizer(lambda: _release_all(executor, namespace, "ttl"))
    # The TTL controller deletes the finished Job in the foreground: the Job stays, marked for
    # deletion and with its conditions, while its pod, also marked, is kept by the finalizer.
    pod = polling.until(lambda: _marked(executor, namespace, "ttl"), timeout=60, what="the TTL to delete the Job")
    kept = executor.get("job", "ttl", "-n", namespace)
    assert kept["metadata"].get("deletionTimestamp") and "foregroundDeletion" in kept["metadata"]["finalizers"]
    assert condition_of(kept, "Complete")
    terminated = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert (pod["status"]["phase"], json.loads(terminated["message"])) == ("Succeeded", {"artifact": "ami-1"})
    assert HOLD in pod["metadata"]["finalizers"]

    polling.until(lambda: _release(executor, namespace, pod["metadata"]["name"]), what="the finalizer to go")
    polling.until(
        lambda: executor.get_or_none("job", "ttl", namespace) is None and not pods(executor, namespace, "ttl"),
        timeout=60,
        what="the Job and its pod to go once released",
    )


def test_a_job_deleted_in_the_background_stops_its_pod_which_a_finalizer_keeps(
    executor: Cluster, namespace: str, request: pytest.FixtureRequest
) -> None:
    code = (
        "import os, signal, sys, time\n"
        "def bye(*_):\n"
        "    open(os.environ['RESULT'], 'w').write('{\"stopped\": true}'); sys.exit(143)\n"
        "signal.signal(signal.SIGTERM, bye)\n"
        "print('ready', flush=True)\n"
        "time.sleep(600)\n"
    )
    executor.apply(_held(job("orphaned", code, pod={"terminationGracePeriodSeconds": 30})), namespace)
    request.addfinalizer(lambda: _release_all(executor, namespace, "orphaned"))
    _running_pod(executor, namespace, "orphaned")
    # As `kubectl delete job` does by default: the Job goes at once, the garbage collector deletes
    # its pod, the executor stops the container, and the finalizer keeps the pod with its status.
    executor.kubectl("delete", "job", "orphaned", "-n", namespace, "--cascade=background", "--wait=false")
    pod = polling.until(lambda: _marked(executor, namespace, "orphaned"), timeout=60, what="the pod to be stopped")
    assert executor.get_or_none("job", "orphaned", namespace) is None
    terminated = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert (terminated["exitCode"], json.loads(terminated["message"])) == (143, {"stopped": True})
    assert HOLD in pod["metadata"]["finalizers"]

    polling.until(lambda: _release(executor, namespace, pod["metadata"]["name"]), what="the finalizer to go")
    polling.until(lambda: not pods(executor, namespace, "orphaned"), timeout=60, what="the pod to go once released")
