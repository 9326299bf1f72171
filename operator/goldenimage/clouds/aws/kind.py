"""What is pure about AWS: the amazon-ebs source block, regions, AMI ids in Packer's report,
tag spelling and what a build Job needs."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

from ...api.goldenimage import AwsTarget, Target
from ...api.imagechannel import AwsPublish, Publish
from ...api.result import ReportedArtifact
from ...api.types import CloudName
from ...config import Config
from ...hcl import Block, Expr
from ..base import Capabilities, PackerReport, SourceContext
from ..connection import communicator

_REGION = re.compile(r"[a-z]{2}(-[a-z]+)+-\d+")


def settings(target: Target) -> AwsTarget:
    assert target.aws is not None, f"target {target.name} is not an AWS target"
    return target.aws


class Aws:
    name: CloudName = "aws"
    builder: str = "amazon-ebs"
    capabilities: Capabilities = Capabilities(
        resolve_sources=True, validate=True, publish=True, deprecate=True, delete=True, sweep=True
    )
    sensitive_env: tuple[str, ...] = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")

    def location(self, target: Target) -> str:
        return settings(target).region

    def regions(self, target: Target) -> tuple[str, ...]:
        aws = settings(target)
        return (aws.region, *aws.copy_to_regions)

    def login_user(self, target: Target) -> str:
        return settings(target).ssh_username

    def tag_key(self, key: str) -> str:
        return key

    def tags(self, tags: Mapping[str, str]) -> dict[str, str]:
        return dict(tags)

    def variables(self, target: Target) -> list[Block]:
        return [
            Block(
                "variable", ("aws_endpoint",), {"type": Expr("string"), "default": ""}, comment="Custom EC2 endpoint."
            )
        ]

    def source(self, target: Target, context: SourceContext) -> Block:
        aws = settings(target)
        attrs: dict[str, object] = {"region": aws.region}
        if context.source_image is not None or aws.source.ami_id is not None:
            attrs["source_ami"] = context.source_image or aws.source.ami_id
        amis = Block("source_ami_filter")
        if "source_ami" not in attrs and aws.source.ami_filter is not None:
            f = aws.source.ami_filter
            amis.attributes = {
                "filters": {"name": f.name, **f.filters},
                "owners": list(f.owners),
                "most_recent": f.most_recent,
            }
        attrs |= {
            "instance_type": aws.instance_type,
            "ami_name": context.artifact_name,
            "ami_description": context.description,
            "ami_regions": list(aws.copy_to_regions) or None,
            "shutdown_behavior": "terminate",  # an orphaned builder ends itself when it shuts down
            "subnet_id": aws.subnet_id,
            "security_group_ids": list(aws.security_group_ids) or None,
            "iam_instance_profile": aws.iam_instance_profile,
            "custom_endpoint_ec2": Expr("var.aws_endpoint"),
        }
        if aws.share_with is not None:
            # Accounts here; organizations and OUs by the runner after the build (Packer 1.6.6
            # knows no ami_org_arns).
            attrs["ami_users"] = list(aws.share_with.accounts) or None
        if aws.encryption is not None:
            attrs["encrypt_boot"] = aws.encryption.encrypted
            attrs["kms_key_id"] = aws.encryption.kms_key_id
        tags = context.tags
        attrs |= {"tags": tags, "snapshot_tags": tags, "run_tags": tags, "run_volume_tags": tags}
        attrs["temporary_key_pair_name"] = context.temporary_name(200)
        attrs |= communicator(context.communicator, aws.ssh_username, {"ssh_interface": "private_ip"})
        block = Block("source", (self.builder, target.name), attrs)
        if amis.attributes:
            block.add(amis)
        return block

    def generalize(self, target: Target) -> tuple[str, ...]:
        return ()

    def artifacts(self, target: Target, report: PackerReport) -> list[ReportedArtifact]:
        """amazon-ebs reports "region:ami-1,region:ami-2"."""
        out: list[tuple[str, str]] = []
        for artifact in report.ids:
            for part in artifact.split(","):
                region, sep, ident = part.strip().partition(":")
                pair = (region, ident) if sep and _REGION.fullmatch(region) else (self.location(target), part.strip())
                if pair[1] and pair not in out:
                    out.append(pair)
        return [ReportedArtifact(region=region, id=ident) for region, ident in out]

    def job_env(self, target: Target, config: Config) -> list[dict[str, Any]]:
        if not config.aws_endpoint_url:
            return []
        return [
            {"name": "GOLDENIMAGE_AWS_ENDPOINT_URL", "value": config.aws_endpoint_url},
            {"name": "PKR_VAR_aws_endpoint", "value": config.aws_endpoint_url},
        ]

    def publish_section(self, publish: Publish) -> BaseModel | None:
        return publish.aws

    def publish_refusal(self, section: BaseModel, namespace: str, prefix: str | None) -> str | None:
        parameter = section.ssm_parameter if isinstance(section, AwsPublish) else None
        if prefix is None or parameter is None or parameter.startswith(prefix):
            return None
        return (
            f"SSM parameter {parameter} is outside {prefix}, where namespace {namespace} may publish: "
            f"choose a path beneath {prefix}"
        )


KIND = Aws()
