"""The three clouds, locally, in this process: moto driving real machines for AWS, the Compute
Engine and Azure Resource Manager fakes behind the TLS edge at the clouds' real host names, all
on one set of machines in the lab. Seeded with what the examples use: Debian 12 as the source
image everywhere, the projects, subscription, resource group and gallery they name, and one
identity for the operator and one for the builds per cloud.

The operator and its Jobs are separate processes: `operator_env()` and `runner_env()` give them
what a cluster's workload identity would (credentials) and the way to the clouds (the AWS
endpoint, the edge as HTTPS proxy with its CA). Tests seed and inspect the fakes directly.
"""

from __future__ import annotations

import datetime
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from goldenimage.clouds.aws.adapter import AwsApi

from .aws import CREDENTIALS, SEED_AMIS
from .edge import Edge
from .fakes import moto_machines
from .fakes.arm import Arm
from .fakes.gce import ComputeEngine
from .machines import images
from .machines.hypervisor import Machines
from .machines.lab import Lab

log = logging.getLogger("goldenimage_dev.clouds")

# AWS: the regions the examples build in, and what their validation selects there.
AWS_REGIONS = ("eu-west-1", "us-east-1", "eu-central-1")
VALIDATION_TAGS = {"Purpose": "image-validation"}
VALIDATION_PROFILE = "image-validation-ssm"

# GCP: the project images are built in, and where Debian's public images live.
GCP_PROJECT = "platform-images"
GCP_PUBLIC_PROJECT = "debian-cloud"
GCP_FAMILY = "debian-12"
# Azure: what the examples name.
AZURE_TENANT = "11111111-1111-1111-1111-111111111111"
AZURE_SUBSCRIPTION = "00000000-0000-0000-0000-000000000000"
AZURE_GROUP = "rg-images"
AZURE_GALLERY = "platform_gallery"
AZURE_LOCATION = "westeurope"
AZURE_DEFINITIONS = ("web-base", "web-multicloud")
AZURE_MARKETPLACE = ("Debian", "debian-12", "12-gen2")
# Service principals: the operator's own, and the builds' (what workload identity would give).
AZURE_OPERATOR = ("22222222-2222-2222-2222-222222222222", "operator-secret")
AZURE_BUILDER = ("33333333-3333-3333-3333-333333333333", "builder-secret")


@dataclass
class LocalClouds:
    directory: Path
    machines: Machines
    moto: moto_machines.Server
    gce: ComputeEngine
    arm: Arm
    edge: Edge
    gcp_keys: dict[str, Path] = field(default_factory=dict)
    _stopped: threading.Event = field(default_factory=threading.Event)

    @classmethod
    def start(cls, directory: Path) -> LocalClouds:
        """Start everything in this process, which must be in a lab (`python -m
        goldenimage_dev.machines lab -- ...`)."""
        directory.mkdir(parents=True, exist_ok=True)
        machines = Machines(directory / "machines")
        try:
            images.ensure("base", apt_proxy=machines.lab.apt_proxy)
            moto_machines.install(machines, amis=SEED_AMIS)
            moto = moto_machines.serve()
        except BaseException:
            moto_machines.uninstall()
            machines.close()
            raise
        gce = ComputeEngine(machines)
        arm = Arm(machines)
        edge = Edge.start(directory / "edge", {**gce.routes(), **arm.routes})
        clouds = cls(directory, machines, moto, gce, arm, edge)
        try:
            clouds._seed()
        except BaseException:
            clouds.stop()
            raise
        return clouds

    def _seed(self) -> None:
        self._seed_aws()
        gce = self.gce
        gce.add_project(GCP_PROJECT)
        for stamp, created in (
            ("20250210", datetime.datetime(2025, 2, 10, tzinfo=datetime.UTC)),
            ("20250428", datetime.datetime(2025, 4, 28, tzinfo=datetime.UTC)),
        ):
            gce.add_image(GCP_PUBLIC_PROJECT, f"debian-12-bookworm-v{stamp}", family=GCP_FAMILY, created=created)
        for who in ("operator", "builder"):
            self.gcp_keys[who] = gce.write_service_account_key(self.directory / f"gcp-{who}.json", GCP_PROJECT, who)

        arm = self.arm
        arm.add_subscription(AZURE_SUBSCRIPTION, AZURE_TENANT)
        for client, secret in (AZURE_OPERATOR, AZURE_BUILDER):
            arm.add_principal(AZURE_TENANT, client, secret=secret)
        arm.add_resource_group(AZURE_SUBSCRIPTION, AZURE_GROUP, AZURE_LOCATION)
        arm.add_gallery(AZURE_SUBSCRIPTION, AZURE_GROUP, AZURE_GALLERY, AZURE_LOCATION)
        publisher, offer, sku = AZURE_MARKETPLACE
        for definition in AZURE_DEFINITIONS:
            arm.add_gallery_image(
                AZURE_SUBSCRIPTION,
                AZURE_GROUP,
                AZURE_GALLERY,
                definition,
                AZURE_LOCATION,
                publisher="platform",
                offer=definition,
                sku="debian-12",
            )
        arm.add_marketplace_image(publisher, offer, sku, ["0.20250210.2019", "0.20250428.2097"])

    def _seed_aws(self) -> None:
        """What the examples' `validation.aws` selects in every region they use: a subnet and a
        security group tagged for validation, and the instance profile command checks use.
        (Instances get their addresses from the lab whatever the subnet says.)"""
        aws = AwsApi(endpoint_url=self.aws_endpoint, credentials=CREDENTIALS)
        tags = [{"Key": k, "Value": v} for k, v in VALIDATION_TAGS.items()]
        for index, region in enumerate(AWS_REGIONS):
            ec2 = aws.ec2(region)
            vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
            ec2.create_subnet(
                VpcId=vpc, CidrBlock=f"10.0.{index}.0/24", TagSpecifications=[{"ResourceType": "subnet", "Tags": tags}]
            )
            ec2.create_security_group(
                GroupName="image-validation",
                Description="validation instances",
                VpcId=vpc,
                TagSpecifications=[{"ResourceType": "security-group", "Tags": tags}],
            )
        aws.client("iam", "us-east-1").create_instance_profile(InstanceProfileName=VALIDATION_PROFILE)

    # -- what other processes need ---------------------------------------------------------

    @property
    def lab(self) -> Lab:
        return self.machines.lab

    @property
    def aws_endpoint(self) -> str:
        return self.moto.endpoint

    def _reach(self) -> dict[str, str]:
        # Machines are reached directly (SSH, checks); the clouds' APIs through the edge.
        return self.edge.env(bypass=[str(self.lab.network)])

    def operator_env(self) -> dict[str, str]:
        """The operator's own cloud identities and the way to the clouds."""
        return {
            **self._reach(),
            **CREDENTIALS,
            "GOLDENIMAGE_AWS_ENDPOINT_URL": self.aws_endpoint,
            "GOOGLE_APPLICATION_CREDENTIALS": str(self.gcp_keys["operator"]),
            "AZURE_TENANT_ID": AZURE_TENANT,
            "AZURE_CLIENT_ID": AZURE_OPERATOR[0],
            "AZURE_CLIENT_SECRET": AZURE_OPERATOR[1],
        }

    def runner_env(self) -> dict[str, str]:
        """What the build and validation Jobs get: in a cluster, their ServiceAccount's workload
        identity; here, the builders' credentials in the environment."""
        return {
            **self._reach(),
            **CREDENTIALS,
            "GOOGLE_APPLICATION_CREDENTIALS": str(self.gcp_keys["builder"]),
            "ARM_TENANT_ID": AZURE_TENANT,
            "ARM_CLIENT_ID": AZURE_BUILDER[0],
            "ARM_CLIENT_SECRET": AZURE_BUILDER[1],
            "AZURE_TENANT_ID": AZURE_TENANT,
            "AZURE_CLIENT_ID": AZURE_BUILDER[0],
            "AZURE_CLIENT_SECRET": AZURE_BUILDER[1],
        }

    # -- looking into images ---------------------------------------------------------------

    def aws_machine_image(self, ami: str) -> str:
        """The machine image behind an AMI the builds made (copies included)."""
        hooks = moto_machines.installed()
        found = hooks.amis.get(ami) if hooks is not None else None
        if found is None or found.image is None:
            raise LookupError(f"{ami} was not made from a machine")
        return found.image

    def run_in_image(self, image: str, argv: list[str]) -> tuple[int, str]:
        """Run `argv` in a read-only view of a machine image: (exit code, output)."""
        code, out = self.machines.inspect(image, argv)
        return code, out.decode(errors="replace")

    def stop(self) -> None:
        """Stop serving and remove every machine; idempotent."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        self.edge.stop()
        self.arm.close()
        self.moto.stop()
        moto_machines.uninstall()
        self.machines.close()

    def __enter__(self) -> LocalClouds:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()
