"""Waiting, with deadlines, for what the end-to-end tests watch: an ImageBuild's conditions and a
channel's pointer."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

from goldenimage.api import labels

from . import polling, procs
from .cluster import Cluster, condition_of

# Ready=False reasons after which a build never becomes Ready.
FINAL_FAILURES = ("BuildFailed", "ValidationFailed")


def settled(cluster: Cluster, ns: str, name: str) -> dict[str, Any] | None:
    """The ImageBuild once its Built condition is final: True, or False with BuildFailed (not
    while it builds, nor while something it needs is missing)."""
    build: dict[str, Any] | None = cluster.get_or_none("imagebuild", name, ns)
    built = condition_of(build, "Built")
    if built and (built["status"] == "True" or built["reason"] == "BuildFailed"):
        return build
    return None


def wait_settled(cluster: Cluster, ns: str, name: str, timeout: float = 600) -> dict[str, Any]:
    build: dict[str, Any] = polling.until(
        lambda: settled(cluster, ns, name), timeout=timeout, what=f"{name} to build or fail"
    )
    return build


def wait_built(cluster: Cluster, ns: str, name: str, timeout: float = 600) -> dict[str, Any]:
    build = wait_settled(cluster, ns, name, timeout)
    condition = condition_of(build, "Built")
    targets = build.get("status", {}).get("targets")
    assert condition and condition["status"] == "True", f"{name} did not build: {condition} {targets}"
    return build


def wait_failed(cluster: Cluster, ns: str, name: str, timeout: float = 600) -> dict[str, Any]:
    build = wait_settled(cluster, ns, name, timeout)
    condition = condition_of(build, "Built")
    assert condition and (condition["status"], condition["reason"]) == ("False", "BuildFailed"), condition
    return build


def wait_validation(cluster: Cluster, ns: str, name: str, timeout: float = 600) -> dict[str, Any]:
    """The ImageBuild once its Validated condition is final (True, or False with ValidationFailed)."""

    def done() -> dict[str, Any] | None:
        build = cluster.get_or_none("imagebuild", name, ns)
        validated = condition_of(build, "Validated")
        if validated and (validated["status"] == "True" or validated["reason"] == "ValidationFailed"):
            return build
        return None

    found: dict[str, Any] = polling.until(done, timeout=timeout, what=f"{name}'s validation to finish")
    return found


def wait_ready(cluster: Cluster, ns: str, name: str, timeout: float = 600) -> dict[str, Any]:
    """The ImageBuild once Ready=True (built and validated); fails as soon as it never can be."""

    def final() -> dict[str, Any] | None:
        build = cluster.get_or_none("imagebuild", name, ns)
        ready = condition_of(build, "Ready")
        if ready and (ready["status"] == "True" or ready["reason"] in FINAL_FAILURES):
            return build
        return None

    build: dict[str, Any] = polling.until(final, timeout=timeout, what=f"{name} to be built and validated")
    ready = condition_of(build, "Ready")
    status = build.get("status", {})
    assert ready and ready["status"] == "True", f"{name} is not Ready: {ready} {status}"
    return build


def pointer(cluster: Cluster, ns: str, channel: str) -> tuple[int | None, str | None]:
    current = cluster.get("imagechannel", channel, "-n", ns).get("status", {}).get("current") or {}
    return current.get("version"), current.get("reason")


def wait_version(cluster: Cluster, ns: str, channel: str, version: int, timeout: float = 120) -> str:
    """The reason the channel gives once it points at `version`."""

    def moved() -> str | None:
        found, reason = pointer(cluster, ns, channel)
        return str(reason) if found == version else None

    reason: str = polling.until(moved, timeout=timeout, what=f"{channel} to point at version {version}")
    return reason


def kill_runner(cluster: Cluster, ns: str, build: str) -> str:
    """SIGKILL the runner of `build`'s only Pod while Packer runs under it (as a crashed node
    would); the Pod's UID, for checking that nothing of the container survives."""
    (pod,) = cluster.get("pods", "-n", ns, "-l", f"{labels.BUILD}={build}")["items"]
    uid: str = pod["metadata"]["uid"]

    def cmdline(pid: int) -> str:
        return Path(f"/proc/{pid}/cmdline").read_text()

    (runner,) = [pid for pid in procs.in_container(uid) if "goldenimage-runner" in cmdline(pid)]
    assert any("packer" in cmdline(pid) for pid in procs.in_container(uid))
    os.kill(runner, signal.SIGKILL)
    return uid
