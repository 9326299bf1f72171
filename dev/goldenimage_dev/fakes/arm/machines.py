"""The machines behind the fake's virtual machines, through a Hypervisor: a VM create boots one,
deallocate powers it off, a managed image snapshots it, a delete removes it; a machine image is
deleted once no managed image, gallery version or VM refers to it any more."""

from __future__ import annotations

import hashlib
import re

from ..hypervisor import Boot, Hypervisor, HypervisorError
from .errors import ArmError
from .ids import ResourceId
from .state import State

IMAGE_KEYS = ("machine_image", "boot_image")  # the `extra` fields that hold a machine image id


class Machines:
    def __init__(self, hypervisor: Hypervisor) -> None:
        self.hypervisor = hypervisor

    @staticmethod
    def name(vm: ResourceId) -> str:
        """Unique per VM: its name, readable, and a hash of its full id."""
        readable = re.sub(r"[^a-z0-9-]", "-", vm.name.lower())[:30].strip("-")
        return f"arm-{readable}-{hashlib.sha256(vm.key.encode()).hexdigest()[:8]}"

    def allocate(self) -> str:
        try:
            return self.hypervisor.allocate()
        except HypervisorError as exc:
            raise ArmError(409, "SubnetIsFull", f"No private address is left for a network interface: {exc}") from exc

    def release(self, address: str) -> None:
        self.hypervisor.release(address)

    def boot(self, request: Boot) -> None:
        try:
            self.hypervisor.boot(request)
        except HypervisorError as exc:
            raise ArmError(500, "OSProvisioningInternalError", f"The virtual machine did not start: {exc}") from exc

    def power_off(self, name: str) -> None:
        try:
            self.hypervisor.power_off(name)
        except HypervisorError as exc:
            raise ArmError(500, "InternalExecutionError", f"The virtual machine did not stop: {exc}") from exc

    def snapshot(self, name: str) -> str:
        try:
            return self.hypervisor.snapshot(name)
        except HypervisorError as exc:
            raise ArmError(500, "InternalExecutionError", f"The image could not be captured: {exc}") from exc

    def remove(self, name: str) -> None:
        try:
            self.hypervisor.remove(name)
        except HypervisorError as exc:
            raise ArmError(500, "InternalExecutionError", f"The virtual machine could not be removed: {exc}") from exc

    def release_image(self, state: State, image: str | None) -> None:
        """Delete a machine image that nothing in the fake refers to any more."""
        if image is None:
            return
        with state.lock:
            used = any(r.extra.get(k) == image for r in state.resources.values() for k in IMAGE_KEYS)
        if not used:
            self.hypervisor.delete_image(image)
