"""Finding and removing what machines leave behind, also after their owner was killed.

Every machine runs in a cgroup of its own under `<cgroup2>/goldenimage-machines/<owner>/`, where
`<owner>` names the process that booted it by PID and start time (a recycled PID does not match).
Its processes, mounts (private to its mount namespace) and network namespace (with the veth
into the lab) all live and die with that cgroup's processes, so a sweep that kills the cgroups
of owners that are gone leaves nothing: no process, no mount, no veth, no cgroup directory.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

TREE = "goldenimage-machines"
_PR_SET_PDEATHSIG = 1


def pids() -> list[int]:
    return [int(entry.name) for entry in os.scandir("/proc") if entry.name.isdigit()]


def _stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def alive(pid: int) -> bool:
    """Running (a zombie has exited)."""
    fields = _stat(pid)
    return fields is not None and fields[0] != "Z"


def die_with_parent() -> None:
    """A preexec hook: SIGKILL the child when the thread that forked it exits."""
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


@dataclass(frozen=True)
class Owner:
    pid: int
    start: int  # clock ticks after boot: tells a PID's incarnations apart

    @classmethod
    def me(cls) -> Owner:
        return cls.of(os.getpid())

    @classmethod
    def of(cls, pid: int) -> Owner:
        fields = _stat(pid)
        return cls(pid, int(fields[19]) if fields else -1)

    @classmethod
    def parse(cls, key: str) -> Owner | None:
        pid, _, start = key.partition("-")
        return cls(int(pid), int(start)) if pid.isdigit() and start.isdigit() else None

    @property
    def key(self) -> str:
        return f"{self.pid}-{self.start}"

    def alive(self) -> bool:
        return alive(self.pid) and Owner.of(self.pid) == self


def cgroup2() -> Path:
    """Where the cgroup v2 hierarchy is mounted (/sys/fs/cgroup, or .../unified on hybrid hosts)."""
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        if right.split()[0] == "cgroup2":
            return Path(left.split()[4])
    raise OSError("no cgroup2 hierarchy is mounted")


def tree() -> Path:
    return cgroup2() / TREE


def procs(cgroup: Path) -> list[int]:
    """The processes in `cgroup` and below."""
    found: list[int] = []
    for directory, _, _ in os.walk(cgroup):
        with contextlib.suppress(OSError):
            found.extend(int(p) for p in (Path(directory) / "cgroup.procs").read_text().split())
    return found


def kill(cgroup: Path, *, timeout: float = 15.0) -> None:
    """SIGKILL everything in `cgroup` and below, wait until it is empty, remove the directories."""
    if not cgroup.exists():
        return
    with contextlib.suppress(OSError):
        (cgroup / "cgroup.kill").write_text("1")
    deadline = time.monotonic() + timeout
    while _populated(cgroup):
        if time.monotonic() > deadline:
            raise TimeoutError(f"processes in {cgroup} did not die: {procs(cgroup)}")
        time.sleep(0.02)
    remove(cgroup)


def _populated(cgroup: Path) -> bool:
    try:
        events = (cgroup / "cgroup.events").read_text()
    except FileNotFoundError:
        return False
    return "populated 1" in events


def remove(cgroup: Path) -> None:
    """rmdir an empty cgroup and everything below it, deepest first."""
    for directory, _, _ in os.walk(cgroup, topdown=False):
        with contextlib.suppress(FileNotFoundError):
            os.rmdir(directory)


def sweep() -> list[str]:
    """Kill and remove the machines of every owner that is gone; the owners' keys."""
    root = tree()
    swept: list[str] = []
    if not root.is_dir():
        return swept
    for entry in sorted(root.iterdir()):
        owner = Owner.parse(entry.name) if entry.is_dir() else None
        if owner is not None and not owner.alive():
            kill(entry)
            swept.append(entry.name)
    with contextlib.suppress(OSError):  # busy while a live owner has machines
        root.rmdir()
    return swept


_NAMESPACES = ("net", "mnt", "pid")


@dataclass(frozen=True)
class Footprint:
    """Everything a machine made on the host, to check afterwards that none of it is left."""

    cgroup: Path
    veth: str
    disk: Path
    namespaces: tuple[tuple[str, int], ...]  # (kind, inode) of the machine's own namespaces

    @classmethod
    def of(cls, pid1: int, cgroup: Path, veth: str, disk: Path) -> Footprint:
        inodes = tuple((kind, os.stat(f"/proc/{pid1}/ns/{kind}").st_ino) for kind in _NAMESPACES)
        return cls(cgroup, veth, disk, inodes)

    def remaining(self) -> list[str]:
        """What is still there: processes in its namespaces or cgroup, mounts of its disk seen
        from here, its cgroup directory, its veth in this network namespace."""
        left: list[str] = []
        inodes = set(self.namespaces)
        for pid in pids():
            for kind in _NAMESPACES:
                with contextlib.suppress(OSError):
                    if (kind, os.stat(f"/proc/{pid}/ns/{kind}").st_ino) in inodes and alive(pid):
                        left.append(f"process {pid} in the machine's {kind} namespace")
                        break
        if self.cgroup.exists():
            left.append(f"cgroup {self.cgroup} (processes {procs(self.cgroup)})")
        disk = str(self.disk)
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            if disk in line:
                left.append(f"mount {line}")
        shown = subprocess.run(["ip", "link", "show", "dev", self.veth], capture_output=True, check=False)
        if shown.returncode == 0:
            left.append(f"veth {self.veth}")
        return left
