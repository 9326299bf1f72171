"""Machines that really boot: Debian root filesystems with systemd as PID 1 in Linux namespaces,
on the lab network at the address a cloud fake assigned, reachable over SSH.

A machine is `unshare --mount --pid --uts --ipc --net --cgroup` running `init.sh` as PID 1 in a
cgroup of its own (see `leftovers`): it mounts an overlay of the image's layers over the base
image with the machine's disk as the upper layer, applies the boot seed and `exec`s systemd.
The host plumbs a veth from the machine's network namespace into the lab's bridge before the
machine goes on. An image is the upper layer of a powered-off machine; a machine booted from an
image stacks that image's layers, so images built on images chain.

Files live under the directory the caller gives (per test session): `machines/<name>/` (disk:
`upper/`, console log, seed) and `images/<id>/` (`layer/`, `image.json`). Base images come from
the cache (`images.ensure`).
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from goldenimage_dev.fakes.hypervisor import Boot, HypervisorError

from . import images, leftovers, seed
from .lab import HOW_TO_ENTER, Lab

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_BOOT_TIMEOUT = 90.0
_POWER_OFF_TIMEOUT = 30.0
_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# PID 1 of a machine until systemd takes over; runs with the host's tools, then chroots.
_INIT = r"""#!/bin/sh
set -eu
# The host plumbs the network in while we wait on stdin; EOF without a line means it gave up.
read -r _
exec </dev/null
root=$MACHINE/root
mount -t overlay overlay -o "lowerdir=$LOWER,upperdir=$MACHINE/upper,workdir=$MACHINE/work" "$root"
mount -t proc -o nosuid,nodev,noexec proc "$root/proc"
mount -t sysfs -o ro,nosuid,nodev,noexec sysfs "$root/sys"
mount -t cgroup2 -o nosuid,nodev,noexec cgroup2 "$root/sys/fs/cgroup"
mount -t tmpfs -o mode=0755,nosuid,size=65536k tmpfs "$root/dev"
for node in null zero full random urandom tty; do
  touch "$root/dev/$node"
  mount --bind "/dev/$node" "$root/dev/$node"
done
mkdir -p "$root/dev/pts" "$root/dev/shm"
mount -t devpts -o newinstance,ptmxmode=0666,mode=0620,gid=5 devpts "$root/dev/pts"
ln -s pts/ptmx "$root/dev/ptmx"
ln -s /proc/self/fd "$root/dev/fd"
ln -s /proc/self/fd/0 "$root/dev/stdin"
ln -s /proc/self/fd/1 "$root/dev/stdout"
ln -s /proc/self/fd/2 "$root/dev/stderr"
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$root/dev/shm"
mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs "$root/run"
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$root/tmp"
hostname "$HOSTNAME_SEED"
env -i PATH="$PATH" chroot "$root" /bin/sh -s < "$MACHINE/seed.sh"
cd "$root"
exec env -i container=goldenimage "$(command -v chroot)" . /lib/systemd/systemd
"""


@dataclass
class _Machine:
    request: Boot
    variant: str
    cgroup: Path
    veth: str
    process: subprocess.Popen[bytes] | None = None
    pid1: int = 0

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


@dataclass(frozen=True)
class ImageInfo:
    id: str
    parent: str | None
    variant: str  # the base image it stacks on
    user: str  # the login user it was booted with: the user of machines booted from it
    deleted: bool = False


@dataclass
class Machines:
    """A Hypervisor of real machines in the current lab; also `command()` to run a program in a
    running machine and `image_file()`/`inspect()` to look into images."""

    directory: Path
    lab: Lab = field(default_factory=lambda: _current_lab())
    owner: leftovers.Owner = field(default_factory=leftovers.Owner.me)
    machines: dict[str, _Machine] = field(default_factory=dict)
    _lock: threading.RLock = field(default_factory=threading.RLock)
    _leases: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.directory = Path(self.directory)
        (self.directory / "machines").mkdir(parents=True, exist_ok=True)
        (self.directory / "images").mkdir(parents=True, exist_ok=True)
        leftovers.sweep()  # what killed runs left
        for attempt in range(3):  # another run may remove the empty parent meanwhile
            try:
                self.cgroup.mkdir(parents=True, exist_ok=True)
                break
            except FileNotFoundError:
                if attempt == 2:
                    raise

    @property
    def cgroup(self) -> Path:
        return leftovers.tree() / self.owner.key

    # -- addresses -----------------------------------------------------------------------

    def allocate(self) -> str:
        """A free address of the lab network, leased in the lab's directory so that every
        process of the run (each with its fakes) gets distinct ones."""
        leases = self.lab.directory / "leases"
        leases.mkdir(exist_ok=True)
        for host in self.lab.network.hosts():
            address = str(host)
            if address == self.lab.gateway:
                continue
            lease = leases / address
            try:
                fd = os.open(lease, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                holder = leftovers.Owner.parse(_read(lease).strip())
                if holder is None or holder.alive():
                    continue
                lease.unlink(missing_ok=True)  # its owner is gone: take it over
                try:
                    fd = os.open(lease, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                except FileExistsError:
                    continue
            with os.fdopen(fd, "w") as out:
                out.write(self.owner.key)
            with self._lock:
                self._leases.add(address)
            return address
        raise HypervisorError(f"no free address left in {self.lab.network}")

    def release(self, address: str) -> None:
        with self._lock:
            if address not in self._leases:
                return
            self._leases.discard(address)
        (self.lab.directory / "leases" / address).unlink(missing_ok=True)

    # -- machines ------------------------------------------------------------------------

    def boot(self, request: Boot) -> None:
        seed.check(request)
        if not _NAME.fullmatch(request.name):
            raise HypervisorError(f"not a machine name: {request.name!r}")
        if ipaddress.ip_address(request.address) not in self.lab.network:
            raise HypervisorError(f"{request.address} is not in the lab network {self.lab.network}")
        chain = self._chain(request.image) if request.image else []
        variant = chain[0].variant if chain else ("cloud-init" if request.cloud_init else "base")
        base = images.ensure(variant, apt_proxy=self.lab.apt_proxy)
        with self._lock:
            if request.name in self.machines and self.machines[request.name].running:
                raise HypervisorError(f"machine {request.name} is already running")
            digest = hashlib.sha256(f"{self.owner.key}/{request.name}".encode()).hexdigest()[:12]
            machine = _Machine(request, variant, self.cgroup / request.name, veth=f"gi{digest}")
            self.machines[request.name] = machine
        disk = self._disk(request.name)
        for sub in ("upper", "work", "root"):
            (disk / sub).mkdir(parents=True, exist_ok=True)
        lower = [str(self._layer(info.id)) for info in chain] + [str(base.rootfs)]
        script = seed.script(request, self.lab.apt_proxy)
        if variant == "cloud-init":
            script = seed.nocloud_script(request, self.lab.apt_proxy)
        (disk / "seed.sh").write_text(script)
        (disk / "init.sh").write_text(_INIT)
        try:
            self._start(machine, disk, ":".join(lower))
            self._wait_for_ssh(machine, disk)
        except BaseException:
            self._stop(machine)
            raise

    def _start(self, machine: _Machine, disk: Path, lower: str) -> None:
        machine.cgroup.mkdir(parents=True, exist_ok=True)
        ready_r, ready_w = os.pipe()
        env = {
            "PATH": _PATH,
            "MACHINE": str(disk),
            "LOWER": lower,
            "HOSTNAME_SEED": seed.hostname(machine.request),
        }
        # Join the machine's cgroup first: the new cgroup namespace is rooted where we stand.
        argv = [
            "/bin/sh",
            "-c",
            'echo $$ > "$1/cgroup.procs" && shift && exec "$@"',
            "sh",
            str(machine.cgroup),
            "unshare",
            "--mount",
            "--pid",
            "--uts",
            "--ipc",
            "--net",
            "--cgroup",
            "--fork",
            "--kill-child",
            "/bin/sh",
            str(disk / "init.sh"),
        ]
        try:
            with (disk / "console.log").open("ab") as console:
                machine.process = subprocess.Popen(
                    argv,
                    stdin=ready_r,
                    stdout=console,
                    stderr=subprocess.STDOUT,
                    env=env,
                    start_new_session=True,
                )
            os.close(ready_r)
            ready_r = -1
            machine.pid1 = self._pid1(machine, disk)
            self._plumb(machine)
            os.write(ready_w, b"go\n")
        finally:
            if ready_r >= 0:
                os.close(ready_r)
            os.close(ready_w)

    def _pid1(self, machine: _Machine, disk: Path) -> int:
        assert machine.process is not None
        unshare = machine.process.pid
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            self._raise_if_exited(machine, disk)
            try:
                children = Path(f"/proc/{unshare}/task/{unshare}/children").read_text().split()
            except OSError:
                children = []
            # The shell has exec'd unshare once the child is in new namespaces.
            if children and Path(f"/proc/{children[0]}/ns/pid").exists():
                child = int(children[0])
                if os.readlink(f"/proc/{child}/ns/pid") != os.readlink("/proc/self/ns/pid"):
                    return child
            time.sleep(0.01)
        raise HypervisorError(f"machine {machine.request.name} did not start")

    def _plumb(self, machine: _Machine) -> None:
        """A veth from the lab's bridge into the machine, with its address and default route."""
        request, peer = machine.request, "gp" + machine.veth[2:]
        _run("ip", "link", "add", machine.veth, "type", "veth", "peer", "name", peer, "netns", str(machine.pid1))
        _run("ip", "link", "set", machine.veth, "master", self.lab.bridge, "up")
        inside = ["nsenter", f"--net=/proc/{machine.pid1}/ns/net", "ip"]
        _run(*inside, "link", "set", "lo", "up")
        _run(*inside, "link", "set", peer, "name", "eth0")
        _run(*inside, "address", "add", f"{request.address}/{self.lab.prefix}", "dev", "eth0")
        _run(*inside, "link", "set", "eth0", "up")
        _run(*inside, "route", "add", "default", "via", self.lab.gateway)

    def _wait_for_ssh(self, machine: _Machine, disk: Path) -> None:
        deadline = time.monotonic() + _BOOT_TIMEOUT
        while True:
            self._raise_if_exited(machine, disk)
            if _ssh_banner(machine.request.address):
                return
            if time.monotonic() > deadline:
                raise HypervisorError(
                    f"machine {machine.request.name} did not answer on {machine.request.address}:22 "
                    f"within {_BOOT_TIMEOUT:.0f}s:\n{_tail(disk / 'console.log')}"
                )
            time.sleep(0.1)

    def _raise_if_exited(self, machine: _Machine, disk: Path) -> None:
        if machine.process is not None and machine.process.poll() is not None:
            raise HypervisorError(
                f"machine {machine.request.name} exited with {machine.process.returncode}:\n"
                f"{_tail(disk / 'console.log')}"
            )

    def power_off(self, name: str) -> None:
        """A clean shutdown: systemd's SIGRTMIN+4 (what `poweroff` sends), then wait for it."""
        machine = self._get(name)
        if not machine.running:
            return
        assert machine.process is not None
        with contextlib.suppress(ProcessLookupError):
            os.kill(machine.pid1, signal.SIGRTMIN + 4)
        try:
            code = machine.process.wait(timeout=_POWER_OFF_TIMEOUT)
        except subprocess.TimeoutExpired as exc:
            self._stop(machine)
            raise HypervisorError(f"machine {name} did not power off within {_POWER_OFF_TIMEOUT:.0f}s") from exc
        self._stop(machine)
        # systemd ends a shutdown with reboot(2), which ends a PID namespace's init with SIGINT
        # (power off, halt) or SIGHUP (reboot); unshare passes the signal on.
        if code != -signal.SIGINT:
            raise HypervisorError(f"machine {name} stopped with {code} instead of powering off")

    def snapshot(self, name: str) -> str:
        """The powered-off machine's disk as an image stacked on the machine's own image."""
        machine = self._get(name)
        if machine.running:
            raise HypervisorError(f"machine {name} is running: power it off before taking an image")
        image = f"img-{uuid.uuid4().hex[:12]}"
        target = self.directory / "images" / image
        building = target.with_name(f".{image}.building")
        building.mkdir(parents=True)
        _run("cp", "-a", "--reflink=auto", str(self._disk(name) / "upper"), str(building / "layer"))
        info = ImageInfo(image, machine.request.image, machine.variant, machine.request.user)
        (building / "image.json").write_text(json.dumps(info.__dict__, indent=2))
        building.rename(target)
        return image

    def remove(self, name: str) -> None:
        with self._lock:
            machine = self.machines.pop(name, None)
        if machine is not None:
            self._stop(machine)
        shutil.rmtree(self._disk(name), ignore_errors=True)
        self._collect()

    def delete_image(self, image: str) -> None:
        """Forget `image`; its layer stays on disk while images or machines stacked on it exist."""
        path = self.directory / "images" / image / "image.json"
        with self._lock:
            info = self.image(image)
            if info is None or info.deleted:
                return
            path.write_text(json.dumps({**info.__dict__, "deleted": True}, indent=2))
        self._collect()

    def close(self) -> None:
        """Remove every machine, give back the leases and the cgroup: nothing is left running."""
        for name in list(self.machines):
            self.remove(name)
        for address in list(self._leases):
            self.release(address)
        leftovers.kill(self.cgroup)
        with contextlib.suppress(OSError):  # busy while other owners have machines
            self.cgroup.parent.rmdir()

    def _stop(self, machine: _Machine) -> None:
        """Kill what is left of the machine and remove its cgroup and veth."""
        leftovers.kill(machine.cgroup)
        if machine.process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                machine.process.wait(timeout=10)
        # Gone with the machine's network namespace; deleted here should anything hold it.
        subprocess.run(["ip", "link", "del", machine.veth], capture_output=True, check=False)

    # -- images --------------------------------------------------------------------------

    def image(self, image: str) -> ImageInfo | None:
        try:
            data = json.loads((self.directory / "images" / image / "image.json").read_text())
        except (OSError, ValueError):
            return None
        return ImageInfo(**data)

    def images(self) -> list[str]:
        """The ids of the images not deleted."""
        found = []
        for entry in sorted((self.directory / "images").iterdir()):
            info = self.image(entry.name)
            if info is not None and not info.deleted:
                found.append(info.id)
        return found

    def _chain(self, image: str) -> list[ImageInfo]:
        """`image` and the images under it, top first."""
        chain: list[ImageInfo] = []
        current: str | None = image
        while current is not None:
            info = self.image(current)
            if info is None or (info.deleted and not chain):
                raise HypervisorError(f"no image {current}")
            chain.append(info)
            current = info.parent
        return chain

    def _layer(self, image: str) -> Path:
        return self.directory / "images" / image / "layer"

    def _collect(self) -> None:
        """Remove deleted images no live image or machine stacks on."""
        with self._lock:
            needed: set[str] = set()
            live = [i for i in self.images()] + [m.request.image for m in self.machines.values() if m.request.image]
            for image in live:
                with contextlib.suppress(HypervisorError):
                    needed.update(info.id for info in self._chain(image))
            for entry in (self.directory / "images").iterdir():
                info = self.image(entry.name)
                if info is not None and info.deleted and info.id not in needed:
                    shutil.rmtree(entry, ignore_errors=True)

    def inspect(self, image: str | None, argv: list[str], *, variant: str = "base") -> tuple[int, bytes]:
        """Run `argv` chrooted in a read-only view of `image` (None: the base image `variant`),
        in a mount namespace of its own that goes with it; (exit code, stdout)."""
        chain = self._chain(image) if image else []
        base = images.ensure(chain[0].variant if chain else variant, apt_proxy=self.lab.apt_proxy)
        lower = ":".join([str(self._layer(info.id)) for info in chain] + [str(base.rootfs)])
        with tempfile.TemporaryDirectory(prefix="inspect-", dir=self.directory) as mountpoint:
            # overlayfs wants two layers at least without an upper one: one is bound read-only.
            script = (
                'case $1 in *:*) mount -t overlay overlay -o "ro,lowerdir=$1" "$2" ;;'
                ' *) mount --bind "$1" "$2" && mount -o remount,bind,ro "$2" ;; esac'
                ' && shift 2 && exec chroot "$@"'
            )
            done = subprocess.run(
                [
                    "unshare",
                    "--mount",
                    "--propagation",
                    "private",
                    "sh",
                    "-c",
                    script,
                    "sh",
                    lower,
                    mountpoint,
                    mountpoint,
                    *argv,
                ],
                capture_output=True,
                env={"PATH": _PATH},
                check=False,
            )
        return done.returncode, done.stdout

    def image_file(self, image: str | None, path: str, *, variant: str = "base") -> bytes:
        """The content of the file `path` in `image` (FileNotFoundError if it has none)."""
        code, out = self.inspect(image, ["cat", "--", path], variant=variant)
        if code != 0:
            raise FileNotFoundError(f"{path} in image {image or variant}")
        return out

    # -- running machines ----------------------------------------------------------------

    def command(self, name: str, argv: list[str], *, timeout: float = 300.0) -> tuple[int, str]:
        """Run `argv` as root inside the running machine (all its namespaces and its root
        directory, in its cgroup); (exit code, stdout and stderr)."""
        machine = self._get(name)
        if not machine.running:
            raise HypervisorError(f"machine {name} is not running")
        enter = [
            "nsenter",
            f"--target={machine.pid1}",
            "--mount",
            "--uts",
            "--ipc",
            "--net",
            "--pid",
            "--cgroup",
            "--root",
            "--wd",
            "--",
            "env",
            "-i",
            f"PATH={_PATH}",
            "HOME=/root",
            "LANG=C.UTF-8",
            *argv,
        ]
        wrapped = ["/bin/sh", "-c", 'echo $$ > "$1/cgroup.procs" && shift && exec "$@"', "sh", str(machine.cgroup)]
        try:
            done = subprocess.run(
                wrapped + enter,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                timeout=timeout,
                env={"PATH": _PATH},
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise HypervisorError(f"{shlex.join(argv)} in {name} did not finish within {timeout:.0f}s") from exc
        return done.returncode, done.stdout.decode(errors="replace")

    def footprint(self, name: str) -> leftovers.Footprint:
        """What the running machine `name` made on the host (see `Footprint.remaining`)."""
        machine = self._get(name)
        return leftovers.Footprint.of(machine.pid1, machine.cgroup, machine.veth, self._disk(name))

    def address(self, name: str) -> str:
        return self._get(name).request.address

    def running(self, name: str) -> bool:
        with self._lock:
            machine = self.machines.get(name)
        return machine is not None and machine.running

    def _get(self, name: str) -> _Machine:
        with self._lock:
            machine = self.machines.get(name)
        if machine is None:
            raise HypervisorError(f"no machine {name}")
        return machine

    def _disk(self, name: str) -> Path:
        return self.directory / "machines" / name


def _current_lab() -> Lab:
    lab = Lab.current()
    if lab is None:
        raise HypervisorError(f"machines run only inside a lab: {HOW_TO_ENTER}")
    return lab


def _run(*argv: str) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise HypervisorError(f"{shlex.join(argv)} failed: {done.stderr.strip()}")


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _tail(path: Path, size: int = 3000) -> str:
    try:
        return path.read_bytes()[-size:].decode(errors="replace")
    except OSError:
        return f"(no {path})"


def _ssh_banner(address: str) -> bool:
    """sshd accepts connections: it sends its version line first."""
    try:
        with socket.create_connection((address, 22), timeout=1) as conn:
            conn.settimeout(2)
            return conn.recv(8).startswith(b"SSH-")
    except OSError:
        return False
