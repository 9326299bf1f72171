"""Commands on a validation instance over SSH, for clouds without an agent the operator can ask
(GCP, Azure): a key pair made for one validation run, and OpenSSH's own client. Like the AWS
agent, commands run as root (through sudo)."""

from __future__ import annotations

import shlex
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..api.errors import CloudError

SSH_FAILED = 255  # OpenSSH's exit code when it could not connect or authenticate


@dataclass(frozen=True)
class KeyPair:
    private: Path
    public: str  # "ssh-ed25519 AAAA... comment"


def new_key(directory: Path | None = None, comment: str = "goldenimage-validation") -> KeyPair:
    """A fresh ed25519 key; the private half stays in `directory` (a new temporary one by default)."""
    where = Path(directory or tempfile.mkdtemp(prefix="goldenimage-ssh-"))
    private = where / "id_ed25519"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(private)],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return KeyPair(private=private, public=private.with_suffix(".pub").read_text().strip())


def run(address: str, user: str, key: KeyPair, command: str, timeout: float) -> tuple[int, str]:
    """(exit code, output) of `command` run as root on `address`. The instance was booted for this
    run, so its host key cannot be known in advance and is not checked."""
    argv = [
        "ssh",
        "-i",
        str(key.private),
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "LogLevel=ERROR",
        "-o",
        f"ConnectTimeout={max(1, min(30, int(timeout)))}",
        f"{user}@{address}",
        "sudo -n sh -c " + shlex.quote(command),
    ]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, errors="replace", timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise CloudError(f"command did not finish within {timeout:.0f}s") from exc
    output = (done.stdout + done.stderr).strip()
    if done.returncode == SSH_FAILED:
        raise CloudError(f"ssh to {user}@{address} failed: {output[-300:]}")
    return done.returncode, output
