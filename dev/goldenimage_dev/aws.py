"""AWS for tests and the demo: moto on 127.0.0.1, seeded with the source images the examples
select (Debian 12 AMIs owned by Debian's account, whose login user is `admin`)."""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from goldenimage.clouds.aws.adapter import AwsApi

from . import processes
from .controlplane import free_port, http_ok

DEBIAN = "136693071363"
LOGIN_USER = "admin"


def _ami(ami_id: str, name: str, created: str, *, cloud_init: bool = False) -> dict[str, object]:
    return {
        "ami_id": ami_id,
        "state": "available",
        "public": True,
        "owner_id": DEBIAN,
        "image_location": "amazon/getting-started",
        "sriov": "simple",
        "root_device_type": "ebs",
        "root_device_name": "/dev/sda1",
        "description": "Debian 12 (bookworm)",
        "image_type": "machine",
        "platform": None,
        "architecture": "x86_64",
        "name": name,
        "virtualization_type": "hvm",
        "hypervisor": "xen",
        "creation_date": created,
        # Read by the machines that boot from it (moto itself ignores these).
        "login_user": LOGIN_USER,
        "cloud_init": cloud_init,
    }


# Two generations of Debian 12, so that "most recent" has a choice to make.
SEED_AMIS = [
    _ami("ami-0f0e0d0c0b0a09081", "debian-12-amd64-20250210-2019", "2025-02-10T10:00:00.000Z"),
    _ami("ami-0a1b2c3d4e5f60718", "debian-12-amd64-20250428-2097", "2025-04-28T10:00:00.000Z"),
]
NEWEST_DEBIAN12 = "ami-0a1b2c3d4e5f60718"
# Debian's "genericcloud" flavour runs cloud-init, as most cloud images do.
CLOUD_INIT_DEBIAN12 = "ami-0c1d2e3f405162738"
SEED_AMIS.append(
    _ami(CLOUD_INIT_DEBIAN12, "debian-12-genericcloud-amd64-20250312-2045", "2025-03-12T10:00:00.000Z", cloud_init=True)
)
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


@dataclass
class Moto:
    directory: Path
    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    amis: list[dict[str, object]] = field(default_factory=lambda: list(SEED_AMIS))
    owns_directory: bool = False  # a temporary one, removed by stop()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @classmethod
    def start(cls, directory: Path | None = None) -> Moto:
        moto = cls(Path(directory or tempfile.mkdtemp(prefix="goldenimage-moto-")), owns_directory=directory is None)
        moto.directory.mkdir(parents=True, exist_ok=True)
        amis = moto.directory / "amis.json"
        amis.write_text(
            json.dumps([{k: v for k, v in a.items() if k not in ("login_user", "cloud_init")} for a in moto.amis])
        )
        moto.port = free_port()
        moto.process = processes.spawn(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(moto.port)],
            log=moto.directory / "moto.log",
            env={**_base_env(), "MOTO_AMIS_PATH": str(amis), **CREDENTIALS},
        )
        try:
            processes.wait_until(moto._up, timeout=60, what="moto to listen")
        except BaseException:
            moto.stop()
            raise
        return moto

    @functools.cached_property
    def aws(self) -> AwsApi:
        """The project's AWS adapter on this moto; `.ec2(region)`, `.client("ssm", region)`."""
        return moto_aws(self.endpoint)

    def _up(self) -> bool:
        processes.raise_if_exited("moto", self.process, self.directory / "moto.log")
        return http_ok(f"{self.endpoint}/moto-api/data.json")

    def stop(self) -> None:
        if self.process is not None:
            processes.stop(self.process)
            self.process = None
        if self.owns_directory:
            shutil.rmtree(self.directory, ignore_errors=True)


def moto_aws(endpoint: str) -> AwsApi:
    """The project's AWS adapter on the moto server at `endpoint`, with its credentials."""
    return AwsApi(endpoint_url=endpoint, credentials=CREDENTIALS)


def _base_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
