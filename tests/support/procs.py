"""Looking at live processes through /proc (zombies count as dead)."""

from __future__ import annotations

from pathlib import Path

from goldenimage_dev import processes
from goldenimage_dev.executor import CONTAINER_ENV

# Processes the fixtures started: the run fails if any outlives it.
STARTED: list[int] = []


def started(pids: list[int]) -> None:
    STARTED.extend(pids)


def _state(pid: int | str) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except (OSError, IndexError):
        return None


def alive(pid: int) -> bool:
    state = _state(pid)
    return state is not None and state != "Z"


def running_with(text: str) -> list[int]:
    """PIDs of live processes whose command line mentions `text`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline and alive(int(entry.name)):
            found.append(int(entry.name))
    return found


def in_container(uid: str) -> list[int]:
    """PIDs of live processes of the local pod executor's container for the pod `uid`."""
    return processes.tagged(CONTAINER_ENV, uid)
