"""The lab: a network namespace of the test run's own, where everything of the run lives.

`python -m goldenimage_dev.machines lab -- CMD ARGS...` runs CMD in a new network namespace
with loopback up and a bridge holding the lab's gateway address, serves the apt gateway there,
and exits with CMD's exit code. When CMD exits, the lab kills every process left in its
namespace and every machine whose owner is gone, stops the gateway and removes its directory;
the namespace disappears with its last process. The host's own network namespace is never
changed: machines, the cloud fakes, Packer and the tests talk to one another only inside.

The network is 10.250.0.0/16 with the gateway at 10.250.0.1: private addresses are safe only
because they never leave this namespace, and this range is unlikely to be confused with the
host's usual ones (Docker's 172.17/16, Kubernetes pod and service ranges such as 10.244/16 and
10.96/12, moto's default VPC 172.31/16); a /16 leaves room for every instance of every fake.

CMD learns the lab from its environment:

    GOLDENIMAGE_LAB=1                     inside a lab
    GOLDENIMAGE_LAB_NETWORK=10.250.0.0/16 the machines' network
    GOLDENIMAGE_LAB_GATEWAY=10.250.0.1    the bridge's address: machines' default route
    GOLDENIMAGE_LAB_BRIDGE=lab0           the bridge machines' veths join
    GOLDENIMAGE_LAB_APT_PROXY=http://10.250.0.1:3142   the apt gateway
    GOLDENIMAGE_LAB_DIR=/tmp/goldenimage-lab-...       the lab's files: address leases, the
                                          gateway's journal (gateway.log); removed at exit
    GOLDENIMAGE_LAB_NETNS=<inode>         the lab namespace's inode, so that a process that
                                          merely inherited these variables is not taken for
                                          one inside

`Lab.current()` reads them (None outside a lab).
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from . import images, leftovers, mirrors, namespaces
from .gateway import PORT, AptGateway

NETWORK = ipaddress.IPv4Network("10.250.0.0/16")
BRIDGE = "lab0"


@dataclass(frozen=True)
class Lab:
    network: ipaddress.IPv4Network
    gateway: str
    bridge: str
    apt_proxy: str
    directory: Path
    netns: int

    @property
    def gateway_journal(self) -> Path:
        """The apt gateway's journal: one `HIT|MISS|REFUSED|FAILED <what>` line per request."""
        return self.directory / "gateway.log"

    @property
    def prefix(self) -> int:
        return self.network.prefixlen

    def env(self) -> dict[str, str]:
        return {
            "GOLDENIMAGE_LAB": "1",
            "GOLDENIMAGE_LAB_NETWORK": str(self.network),
            "GOLDENIMAGE_LAB_GATEWAY": self.gateway,
            "GOLDENIMAGE_LAB_BRIDGE": self.bridge,
            "GOLDENIMAGE_LAB_APT_PROXY": self.apt_proxy,
            "GOLDENIMAGE_LAB_DIR": str(self.directory),
            "GOLDENIMAGE_LAB_NETNS": str(self.netns),
        }

    @classmethod
    def current(cls) -> Lab | None:
        """The lab this process runs in, or None (no lab variables, or not in its namespace)."""
        env = os.environ
        if env.get("GOLDENIMAGE_LAB") != "1":
            return None
        try:
            lab = cls(
                network=ipaddress.IPv4Network(env["GOLDENIMAGE_LAB_NETWORK"]),
                gateway=env["GOLDENIMAGE_LAB_GATEWAY"],
                bridge=env["GOLDENIMAGE_LAB_BRIDGE"],
                apt_proxy=env["GOLDENIMAGE_LAB_APT_PROXY"],
                directory=Path(env["GOLDENIMAGE_LAB_DIR"]),
                netns=int(env["GOLDENIMAGE_LAB_NETNS"]),
            )
        except (KeyError, ValueError):
            return None
        return lab if namespaces.net_inode() == lab.netns else None


def inside() -> bool:
    return Lab.current() is not None


HOW_TO_ENTER = "run it inside the lab: python -m goldenimage_dev.machines lab -- COMMAND (as root)"


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, stdin=subprocess.DEVNULL)


def _exit_code(returncode: int) -> int:
    return 128 - returncode if returncode < 0 else returncode


def run(argv: Sequence[str], *, network: ipaddress.IPv4Network = NETWORK) -> int:
    """Run `argv` in a new lab; its exit code (128+N when killed by signal N)."""
    if os.geteuid() != 0:
        print("the lab needs root (network namespaces, bridges, overlay mounts)", file=sys.stderr)
        return 1
    if not argv:
        print("usage: python -m goldenimage_dev.machines lab -- COMMAND [ARGS...]", file=sys.stderr)
        return 2
    gateway = str(next(network.hosts()))
    # The host's namespace, kept open so that the gateway can dial out from it.
    outside = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    namespaces.unshare(namespaces.CLONE_NEWNET)
    directory = Path(tempfile.mkdtemp(prefix="goldenimage-lab-"))
    proxy: AptGateway | None = None
    child: subprocess.Popen[bytes] | None = None
    try:
        _ip("link", "set", "lo", "up")
        _ip("link", "add", BRIDGE, "type", "bridge")
        _ip("address", "add", f"{gateway}/{network.prefixlen}", "dev", BRIDGE)
        _ip("link", "set", BRIDGE, "up")
        netns = namespaces.net_inode()
        assert netns is not None
        lab = Lab(network, gateway, BRIDGE, f"http://{gateway}:{PORT}", directory, netns)
        proxy = AptGateway(
            gateway,
            hosts=mirrors.hosts(),
            cache=images.cache_root() / "apt",
            outside=outside,
            journal=lab.gateway_journal,
        ).start()
        # Ctrl-C reaches CMD through the terminal's process group; the lab waits for CMD to end.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        child = subprocess.Popen(list(argv), env={**os.environ, **lab.env()}, preexec_fn=leftovers.die_with_parent)
        signal.signal(signal.SIGTERM, lambda *_: child.send_signal(signal.SIGTERM) if child else None)
        return _exit_code(child.wait())
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        _stop_everything_in(namespaces.net_inode())
        leftovers.sweep()
        if proxy is not None:
            proxy.stop()
        os.close(outside)
        shutil.rmtree(directory, ignore_errors=True)


def _stop_everything_in(netns: int | None, *, timeout: float = 10.0) -> None:
    """SIGKILL every process in the namespace `netns` but this one, until none is left."""
    deadline = time.monotonic() + timeout
    me = os.getpid()
    while time.monotonic() < deadline:
        found = [
            pid for pid in leftovers.pids() if pid != me and namespaces.net_inode(pid) == netns and leftovers.alive(pid)
        ]
        if not found:
            return
        for pid in found:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)
