"""What is pure about Google Cloud: the googlecompute source block, where images live, labels
as GCP spells them, image references, and what a build Job needs.

Credentials: with `credentials.gcp.secretRef`, the Secret's key `GOOGLE_CREDENTIALS` holds a
service-account key (its JSON document, the only kind Packer 1.6.6's `account_file` takes). The
Job gets the Secret as environment; `account_file` takes the JSON itself, so the template reads it
through a sensitive variable whose default is that environment variable. Without it the variable
is empty and Packer, like the operator, uses Application Default Credentials (Workload Identity,
GOOGLE_APPLICATION_CREDENTIALS).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

from ...api.goldenimage import GcpTarget, Target
from ...api.imagechannel import Publish
from ...api.result import ReportedArtifact
from ...api.types import CloudName
from ...config import Config
from ...hcl import Block, Expr
from ..base import Capabilities, PackerReport, SourceContext
from ..connection import communicator

CREDENTIALS_ENV = "GOOGLE_CREDENTIALS"
CREDENTIALS_VARIABLE = "gcp_credentials"

_IMAGE = re.compile(r"^(?:https://[^/]+/compute/(?:v1|beta|alpha)/)?projects/([^/]+)/global/images/([^/]+)$")


def settings(target: Target) -> GcpTarget:
    assert target.gcp is not None, f"target {target.name} is not a GCP target"
    return target.gcp


def label_key(key: str) -> str:
    """GCP label keys: lowercase letters, digits, '_' and '-', starting with a letter, <= 63."""
    text = re.sub(r"[^a-z0-9_-]", "-", key.lower().replace("/", "_"))
    if not text or not text[0].isalpha():
        text = "t" + text
    return text[:63]


def label_value(value: str) -> str:
    return re.sub(r"[^a-z0-9_-]", "-", value.lower())[:63]


def region_of(zone: str) -> str:
    return zone.rsplit("-", 1)[0]


def image_path(project: str, name: str) -> str:
    """How the operator records a GCP image: images are global, so the id names the project
    (and is what instance templates and Terraform accept as an image)."""
    return f"projects/{project}/global/images/{name}"


def parse_image(ref: str) -> tuple[str | None, str]:
    """(project, name) of an image path or URL; (None, name) for a bare name."""
    match = _IMAGE.match(ref.strip())
    if match is not None:
        return match.group(1), match.group(2)
    return None, ref.strip()


class Gcp:
    name: CloudName = "gcp"
    builder: str = "googlecompute"
    capabilities: Capabilities = Capabilities(
        resolve_sources=True, validate=True, publish=True, deprecate=True, delete=True, sweep=True
    )
    sensitive_env: tuple[str, ...] = (CREDENTIALS_ENV,)

    def location(self, target: Target) -> str:
        return settings(target).zone

    def regions(self, target: Target) -> tuple[str, ...]:
        """Images are global; the recorded region is where the image is stored."""
        gcp = settings(target)
        return (gcp.storage_locations[0] if gcp.storage_locations else region_of(gcp.zone),)

    def login_user(self, target: Target) -> str:
        return settings(target).ssh_username

    def tag_key(self, key: str) -> str:
        return label_key(key)

    def tags(self, tags: Mapping[str, str]) -> dict[str, str]:
        return {label_key(k): label_value(v) for k, v in tags.items()}

    def variables(self, target: Target) -> list[Block]:
        return [
            Block(
                "variable",
                (CREDENTIALS_VARIABLE,),
                {"type": Expr("string"), "default": Expr(f'env("{CREDENTIALS_ENV}")'), "sensitive": True},
                comment=f"Credentials JSON from the Secret's {CREDENTIALS_ENV}; empty: Application Default "
                "Credentials.",
            )
        ]

    def source(self, target: Target, context: SourceContext) -> Block:
        gcp = settings(target)
        attrs: dict[str, object] = {"project_id": gcp.project, "zone": gcp.zone, "machine_type": gcp.machine_type}
        attrs["account_file"] = Expr(f"var.{CREDENTIALS_VARIABLE}")
        if context.source_image is not None or gcp.source.image is not None:
            attrs["source_image"] = context.source_image or gcp.source.image
        else:
            attrs["source_image_family"] = gcp.source.family
        if gcp.source.project is not None:
            attrs["source_image_project_id"] = [gcp.source.project]
        attrs |= {
            "image_name": context.artifact_name,
            "image_description": context.description,
            "image_labels": context.tags,
            "labels": context.tags,
            # Always explicit: GCE would otherwise pick a multi-region, and the recorded region
            # must be where the image is.
            "image_storage_locations": list(self.regions(target)),
            "network": gcp.network,
            "subnetwork": gcp.subnetwork,
            "disk_size": gcp.disk_size_gb,
            "instance_name": context.temporary_name(56),
        }
        attrs |= communicator(context.communicator, gcp.ssh_username, {"use_internal_ip": True})
        return Block("source", (self.builder, target.name), attrs)

    def generalize(self, target: Target) -> tuple[str, ...]:
        return ()

    def artifacts(self, target: Target, report: PackerReport) -> list[ReportedArtifact]:
        """googlecompute reports the image's name; it is recorded as its path in the project."""
        project = settings(target).project
        paths: list[str] = []
        for ident in report.ids:
            if not ident.strip():
                continue
            owner, name = parse_image(ident)
            path = image_path(owner or project, name)
            if path not in paths:
                paths.append(path)
        region = self.regions(target)[0]
        return [ReportedArtifact(region=region, id=path) for path in paths]

    def job_env(self, target: Target, config: Config) -> list[dict[str, Any]]:
        return []

    def publish_section(self, publish: Publish) -> BaseModel | None:
        return publish.gcp

    def publish_refusal(self, section: BaseModel, namespace: str, prefix: str | None) -> str | None:
        return None  # the platform's prefix rule is about SSM parameter paths


KIND = Gcp()
