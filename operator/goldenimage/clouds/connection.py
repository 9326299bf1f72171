"""How Packer connects to the instance it builds on, for every cloud's source block."""

from __future__ import annotations

from collections.abc import Mapping

from .base import Communicator


def communicator(kind: Communicator, username: str, private: Mapping[str, object]) -> dict[str, object]:
    """SSH as `username` through the instance's private address (`private`: how this cloud's
    builder says so): build Jobs run inside the network they build in. With "none", Packer never
    connects (provisioners are rendered and validated, not run)."""
    if kind == "none":
        return {"communicator": "none"}
    return {"communicator": "ssh", "ssh_username": username, "ssh_timeout": "20m", **private}
