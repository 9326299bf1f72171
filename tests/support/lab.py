"""The lab for the tests with real machines: they run only inside one (as root), and reach the
machines over SSH and HTTP on the lab network."""

from __future__ import annotations

import asyncio
import http.client
import os
import shutil
from dataclasses import dataclass

import asyncssh

from goldenimage_dev.machines import images
from goldenimage_dev.machines.lab import Lab
from support import components

HOW = (
    "run the tests inside a lab, as root, as ./hack/test.sh does: "
    ".venv/bin/python -m goldenimage_dev.machines lab -- .venv/bin/python -m pytest ..."
)


def require() -> Lab:
    """The lab this test runs in; `components.missing` (fails in CI, skips locally) outside one."""
    if os.geteuid() != 0:
        components.missing("root", HOW)
    lab = Lab.current()
    if lab is None:
        components.missing("the lab network", HOW)
    if shutil.which("mmdebstrap") is None and images.cached("base") is None:
        components.missing("mmdebstrap (to build the machines' base image)", "apt-get install -y mmdebstrap")
    return lab


@dataclass(frozen=True)
class Key:
    private: asyncssh.SSHKey

    @property
    def public(self) -> str:
        return self.private.export_public_key().decode().strip()


def new_key() -> Key:
    return Key(asyncssh.generate_private_key("ssh-ed25519"))


def ssh(address: str, user: str, key: Key, command: str, *, timeout: float = 60) -> tuple[int, str]:
    """Log in as `user` with `key` and run `command`: (exit status, stdout and stderr)."""

    async def run() -> tuple[int, str]:
        async with asyncssh.connect(
            address, username=user, client_keys=[key.private], known_hosts=None, connect_timeout=10
        ) as conn:
            done = await conn.run(command, check=False, stderr=asyncssh.STDOUT)
            return int(done.exit_status or 0), str(done.stdout or "")

    return asyncio.run(asyncio.wait_for(run(), timeout))


def http_get(address: str, path: str = "/", port: int = 80) -> tuple[int, str]:
    connection = http.client.HTTPConnection(address, port, timeout=5)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read().decode(errors="replace")
    finally:
        connection.close()


def journal(lab: Lab) -> list[str]:
    """The apt gateway's journal: `HIT|MISS|REFUSED|FAILED <what>` per request."""
    try:
        return lab.gateway_journal.read_text().splitlines()
    except FileNotFoundError:
        return []
