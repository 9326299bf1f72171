"""Starting and stopping local helper processes so that none outlives its owner."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> Callable[[], None] | None:
    """A preexec hook that makes the child receive SIGKILL when its parent dies.

    Linux delivers the signal when the *thread* that forked exits, so it is only safe from the
    main thread; elsewhere the caller's own teardown has to do.
    """
    if threading.current_thread() is not threading.main_thread():
        return None
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:
        return None

    def hook() -> None:
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)

    return hook


def spawn(
    argv: Sequence[str],
    *,
    log: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start a process in its own session with output to `log`."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        return subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,
            preexec_fn=_die_with_parent(),
        )


def stop(process: subprocess.Popen[bytes], *, grace: float = 10.0) -> int | None:
    """SIGTERM the process's group, SIGKILL it after `grace` seconds; returns the exit status."""
    if process.poll() is None:
        _signal_group(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=grace)
    # Children that ignored SIGTERM or outlived their leader go too.
    _signal_group(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=5)
    return process.returncode


def raise_if_exited(name: str, process: subprocess.Popen[bytes] | None, log: Path, *, tail: int = 3000) -> None:
    """RuntimeError with the end of `log` when `process` has exited: for readiness polls, so that
    a helper that dies while starting says why instead of ending in a timeout."""
    if process is None or process.poll() is None:
        return
    try:
        end = log.read_bytes()[-tail:].decode(errors="replace")
    except OSError:
        end = f"(no log at {log})"
    raise RuntimeError(f"{name} exited with {process.returncode}:\n{end}")


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def tagged(name: str, value: str) -> list[int]:
    """Live processes started with `name=value` in their environment, which children inherit
    even across sessions (zombies have an empty environment and do not count)."""
    needle = f"{name}={value}".encode()
    return [pid for pid in _pids() if needle in _environ(pid)]


def kill_tagged(name: str, value: str) -> list[int]:
    """SIGKILL every process tagged `name=value`: what a container runtime does to a
    container's cgroup."""
    killed: list[int] = []
    for _ in range(5):  # again, for what forked meanwhile
        found = [pid for pid in tagged(name, value) if pid not in killed]
        if not found:
            break
        for pid in found:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        killed.extend(found)
    return killed


def _pids() -> list[int]:
    return [int(entry.name) for entry in os.scandir("/proc") if entry.name.isdigit()]


def _environ(pid: int) -> list[bytes]:
    try:  # empty for zombies, unreadable for other users' processes
        return Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return []


def wait_until(condition: Callable[[], bool], *, timeout: float, interval: float = 0.1, what: str) -> None:
    """Poll `condition` until it holds; TimeoutError naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)
