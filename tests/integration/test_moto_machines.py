"""moto driving real machines (goldenimage_dev.fakes.moto_machines): Debian's Packer 1.6.6
`amazon-ebs` with an SSH communicator builds an AMI with shell (nginx through the apt gateway),
file and ansible provisioners; the AMI, and its copy in another region, boot and serve nginx;
SSM's AWS-RunShellScript runs for real, failing when the command fails.

Run inside the lab: python -m goldenimage_dev.machines lab -- python -m pytest <this file>.
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from goldenimage_dev import processes
from goldenimage_dev.controlplane import free_port, http_ok
from goldenimage_dev.machines import leftovers
from goldenimage_dev.machines.lab import Lab
from support import components, polling, procs
from support import lab as labs

pytestmark = pytest.mark.integration

SOURCE_AMI = "ami-0a1b2c3d4e5f60718"
USER = "ec2-user"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
AMIS = [
    {
        "ami_id": SOURCE_AMI,
        "state": "available",
        "public": True,
        "owner_id": "309956199498",
        "image_location": "amazon/getting-started",
        "root_device_type": "ebs",
        "root_device_name": "/dev/sda1",
        "description": "a seeded source image",
        "image_type": "machine",
        "architecture": "x86_64",
        "name": "RHEL-9.5.0_HVM-20250313-x86_64-40-Hourly2-GP3",
        "virtualization_type": "hvm",
        "hypervisor": "xen",
        "creation_date": "2025-03-13T10:00:00.000Z",
        "login_user": USER,
    }
]

# Short timeouts everywhere: a broken setup fails in about a minute, not in Packer's defaults.
TEMPLATE = """
variable "endpoint" {
  type = string
}
variable "files" {
  type = string
}
variable "manifest" {
  type = string
}
source "amazon-ebs" "web" {
  region              = "eu-west-1"
  source_ami          = "SOURCE_AMI"
  instance_type       = "t3.micro"
  ami_name            = "web-on-machines"
  ami_regions         = ["us-east-1"]
  custom_endpoint_ec2 = var.endpoint
  communicator        = "ssh"
  ssh_username        = "LOGIN_USER"
  ssh_interface       = "private_ip"
  ssh_timeout         = "60s"
  aws_polling {
    delay_seconds = 1
    max_attempts  = 60
  }
}
build {
  sources = ["source.amazon-ebs.web"]
  provisioner "shell" {
    inline = [
      "sudo apt-get update -q",
      "sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -q nginx-light",
    ]
  }
  provisioner "file" {
    source      = "${var.files}/index.html"
    destination = "/tmp/index.html"
  }
  provisioner "shell" {
    inline = ["sudo install -m 0644 /tmp/index.html /var/www/html/index.html"]
  }
  provisioner "ansible" {
    playbook_file = "${var.files}/playbook.yml"
    # Packer 1.6.6 tells Ansible the local user's name unless told the machine's.
    user = "LOGIN_USER"
    # Packer's SSH proxy for Ansible offers only an ssh-rsa host key, which OpenSSH 9 refuses.
    ansible_env_vars = [
      "ANSIBLE_HOST_KEY_CHECKING=False",
      "ANSIBLE_NOCOLOR=True",
      "ANSIBLE_SSH_ARGS=-o HostKeyAlgorithms=+ssh-rsa -o PubkeyAcceptedKeyTypes=+ssh-rsa",
    ]
  }
  post-processor "manifest" {
    output = var.manifest
  }
}
""".replace("SOURCE_AMI", SOURCE_AMI).replace("LOGIN_USER", USER)

PAGE = "<h1>built on a real machine</h1>\n"
PLAYBOOK = """\
- hosts: all
  become: true
  tasks:
    - name: leave a mark
      copy:
        dest: /etc/provisioned-by-ansible
        content: "yes\\n"
"""


@dataclass
class MotoMachines:
    endpoint: str
    directory: Path
    owner: leftovers.Owner

    def ec2(self, region: str) -> Any:
        return boto3.client("ec2", region_name=region, endpoint_url=self.endpoint, **_lower(CREDENTIALS))

    def ssm(self, region: str) -> Any:
        return boto3.client("ssm", region_name=region, endpoint_url=self.endpoint, **_lower(CREDENTIALS))

    def machine_cgroups(self) -> list[str]:
        owner = leftovers.tree() / self.owner.key
        return sorted(p.name for p in owner.iterdir() if p.is_dir()) if owner.exists() else []


def _lower(credentials: dict[str, str]) -> dict[str, str]:
    return {key.lower(): value for key, value in credentials.items()}


@pytest.fixture(scope="module")
def lab() -> Lab:
    return labs.require()


@pytest.fixture(scope="module")
def moto(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoMachines]:
    directory = tmp_path_factory.mktemp("moto-machines")
    (directory / "amis.json").write_text(json.dumps(AMIS))
    port = free_port()
    log = directory / "moto.log"
    process = processes.spawn(
        [
            *(sys.executable, "-m", "goldenimage_dev.fakes.moto_machines", "-H", "127.0.0.1", "-p", str(port)),
            *("--machines", str(directory / "machines"), "--amis", str(directory / "amis.json")),
        ],
        log=log,
        env={k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
    )
    procs.started([process.pid])
    owner = leftovers.Owner.of(process.pid)
    endpoint = f"http://127.0.0.1:{port}"
    try:

        def up() -> bool:
            processes.raise_if_exited("moto_machines", process, log)
            return http_ok(f"{endpoint}/moto-api/data.json")

        processes.wait_until(up, timeout=60, what="moto on machines to listen")
        yield MotoMachines(endpoint, directory, owner)
    finally:
        processes.stop(process, grace=60)
    assert not (leftovers.tree() / owner.key).exists(), "machines outlived moto"


@pytest.fixture(scope="module")
def key() -> labs.Key:
    return labs.new_key()


@pytest.fixture(scope="module")
def key_names(moto: MotoMachines, key: labs.Key) -> dict[str, str]:
    for region in ("eu-west-1", "us-east-1"):
        moto.ec2(region).import_key_pair(KeyName="tests", PublicKeyMaterial=key.public.encode())
    return {"eu-west-1": "tests", "us-east-1": "tests"}


def _launch(moto: MotoMachines, region: str, image: str) -> dict[str, Any]:
    """RunInstances returns once the machine answers SSH."""
    started = time.monotonic()
    ec2 = moto.ec2(region)
    instance: dict[str, Any] = ec2.run_instances(ImageId=image, KeyName="tests", MinCount=1, MaxCount=1)["Instances"][0]
    instance["BootSeconds"] = time.monotonic() - started
    return instance


def _terminate(moto: MotoMachines, region: str, instance_id: str) -> None:
    moto.ec2(region).terminate_instances(InstanceIds=[instance_id])


def _ssm(moto: MotoMachines, region: str, instance_id: str, command: str) -> dict[str, Any]:
    ssm = moto.ssm(region)
    sent = ssm.send_command(
        InstanceIds=[instance_id], DocumentName="AWS-RunShellScript", Parameters={"commands": [command]}
    )
    command_id = sent["Command"]["CommandId"]

    def finished() -> dict[str, Any] | None:
        result: dict[str, Any] = ssm.get_command_invocation(CommandId=command_id, InstanceId=instance_id)
        return None if result["Status"] in ("Pending", "InProgress") else result

    return polling.until(finished, timeout=60, what=f"SSM command {command!r}")


def test_instances_are_machines_stop_powers_off_and_start_boots_again(
    moto: MotoMachines, key: labs.Key, key_names: dict[str, str], lab: Lab
) -> None:
    instance = _launch(moto, "eu-west-1", SOURCE_AMI)
    try:
        address = instance["PrivateIpAddress"]
        assert ipaddress.ip_address(address) in lab.network and address != lab.gateway
        code, output = labs.ssh(address, USER, key, "systemctl is-system-running --wait; sudo -n id -u")
        assert (code, output.split()) == (0, ["running", "0"])
        assert len(moto.machine_cgroups()) == 1

        ec2 = moto.ec2("eu-west-1")
        ec2.stop_instances(InstanceIds=[instance["InstanceId"]])
        state = ec2.describe_instances(InstanceIds=[instance["InstanceId"]])["Reservations"][0]["Instances"][0]
        assert state["State"]["Name"] == "stopped"
        assert moto.machine_cgroups() == []  # powered off before moto said stopped

        ec2.start_instances(InstanceIds=[instance["InstanceId"]])
        code, output = labs.ssh(address, USER, key, "cat /etc/hostname")
        assert code == 0
    finally:
        _terminate(moto, "eu-west-1", instance["InstanceId"])
    assert moto.machine_cgroups() == []


def test_packer_builds_an_ami_on_a_machine_and_the_ami_boots_serving_nginx(
    moto: MotoMachines, key: labs.Key, key_names: dict[str, str], tmp_path: Path
) -> None:
    packer = components.packer()
    files = tmp_path / "files"
    files.mkdir()
    (files / "index.html").write_text(PAGE)
    (files / "playbook.yml").write_text(PLAYBOOK)
    (tmp_path / "build.pkr.hcl").write_text(TEMPLATE)
    manifest = tmp_path / "manifest.json"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
        **CREDENTIALS,
        "AWS_DEFAULT_REGION": "eu-west-1",
        "CHECKPOINT_DISABLE": "1",  # Packer's update check would dial out
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",  # ansible-playbook
        "PACKER_CONFIG_DIR": str(tmp_path / "packer-config"),
        "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible"),
    }
    started = time.monotonic()
    build = subprocess.run(
        [
            *(packer, "build", "-color=false", f"-var=endpoint={moto.endpoint}", f"-var=files={files}"),
            *(f"-var=manifest={manifest}", "build.pkr.hcl"),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    seconds = time.monotonic() - started
    assert build.returncode == 0, build.stdout[-6000:] + build.stderr[-2000:]
    print(f"packer build: {seconds:.1f}s")
    artifact = json.loads(manifest.read_text())["builds"][-1]["artifact_id"]
    amis = dict(pair.split(":") for pair in artifact.split(","))
    assert set(amis) == {"eu-west-1", "us-east-1"}
    assert moto.machine_cgroups() == [], "Packer's builder instance is gone"

    for region in ("eu-west-1", "us-east-1"):  # the copy boots the same image
        instance = _launch(moto, region, amis[region])
        print(f"boot of the AMI in {region}: {instance['BootSeconds']:.1f}s")
        try:
            address, instance_id = instance["PrivateIpAddress"], instance["InstanceId"]

            def serves(address: str = address) -> bool:
                return labs.http_get(address) == (200, PAGE)

            assert polling.until(serves, timeout=30, what="nginx to serve the provisioned page")
            active = _ssm(moto, region, instance_id, "systemctl is-active nginx")
            assert (active["Status"], active["ResponseCode"], active["StandardOutputContent"].strip()) == (
                "Success",
                0,
                "active",
            )
            failing = _ssm(moto, region, instance_id, "echo the check failed; exit 3")
            assert (failing["Status"], failing["ResponseCode"]) == ("Failed", 3)
            assert "the check failed" in failing["StandardOutputContent"]
            code, output = labs.ssh(address, USER, key, "cat /etc/provisioned-by-ansible")
            assert (code, output) == (0, "yes\n")
        finally:
            _terminate(moto, region, instance["InstanceId"])

    for region, ami in amis.items():
        moto.ec2(region).deregister_image(ImageId=ami)
    images = moto.directory / "machines" / "images"
    left = [p.name for p in images.iterdir()] if images.exists() else []
    assert left == [], f"images left after every AMI was deregistered: {left}"
