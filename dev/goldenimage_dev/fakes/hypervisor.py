"""What a cloud fake asks of the machines behind its instances.

The fakes (moto's hooks, Compute Engine, Azure Resource Manager) turn their API calls into these
calls: an instance insert boots a machine at the address the fake assigned, a stop powers it off,
an image capture snapshots it, a delete removes it. `goldenimage_dev.machines` implements this
with real machines in the test run's lab network; `Recorder` implements it without booting
anything, for tests of a fake's API alone.
"""

from __future__ import annotations

import ipaddress
import threading
from dataclasses import dataclass, field
from typing import Protocol


class HypervisorError(Exception):
    """A machine could not be booted, stopped, snapshotted or removed; the message says why."""


@dataclass(frozen=True)
class Boot:
    """What an instance insert asks for."""

    name: str  # unique per fake and instance: e.g. "gce-<project>-<zone>-<instance>"
    address: str  # the instance's private address, from Hypervisor.allocate()
    image: str | None  # an image id Hypervisor.snapshot() returned; None for the base image
    user: str  # the login user (created if the image lacks it), with password-less sudo
    public_keys: tuple[str, ...] = ()  # OpenSSH public keys authorized for `user`
    hostname: str = ""
    cloud_init: bool = False  # the base image variant with cloud-init (a NoCloud seed)


class Hypervisor(Protocol):
    def allocate(self) -> str:
        """A free address in the lab network for a new instance (never handed out twice while
        in use)."""

    def release(self, address: str) -> None:
        """The address is free again."""

    def boot(self, request: Boot) -> None:
        """Start a machine; returns once it accepts SSH connections on port 22."""

    def power_off(self, name: str) -> None:
        """Shut the machine down cleanly (its disk stays, to be snapshotted or removed)."""

    def snapshot(self, name: str) -> str:
        """Capture the powered-off machine's disk as an image; returns the image id."""

    def remove(self, name: str) -> None:
        """Stop the machine if it runs and delete its disk; unknown names are ignored."""

    def delete_image(self, image: str) -> None:
        """Forget an image (images built on it keep working); unknown ids are ignored."""


@dataclass
class Recorder:
    """A Hypervisor that boots nothing: it records the calls and hands out addresses, so that a
    fake's API can be tested (and Packer run with `communicator = "none"`) without machines."""

    network: str = "10.250.0.0/24"
    calls: list[tuple[str, str]] = field(default_factory=list)
    running: dict[str, Boot] = field(default_factory=dict)
    images: set[str] = field(default_factory=set)
    _used: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def allocate(self) -> str:
        with self._lock:
            hosts = ipaddress.ip_network(self.network).hosts()
            next(hosts)  # the gateway
            for host in hosts:
                if str(host) not in self._used:
                    self._used.add(str(host))
                    return str(host)
        raise HypervisorError(f"no free address left in {self.network}")

    def release(self, address: str) -> None:
        with self._lock:
            self._used.discard(address)

    def boot(self, request: Boot) -> None:
        self.calls.append(("boot", request.name))
        self.running[request.name] = request

    def power_off(self, name: str) -> None:
        self.calls.append(("power_off", name))

    def snapshot(self, name: str) -> str:
        self.calls.append(("snapshot", name))
        image = f"img-{len(self.images) + 1}"
        self.images.add(image)
        return image

    def remove(self, name: str) -> None:
        self.calls.append(("remove", name))
        self.running.pop(name, None)

    def delete_image(self, image: str) -> None:
        self.calls.append(("delete_image", image))
        self.images.discard(image)
