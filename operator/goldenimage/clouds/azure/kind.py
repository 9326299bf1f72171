"""What is pure about Azure: the azure-arm source block with its Compute Gallery destination,
replication regions, gallery image version ids in Packer's report, tag spelling and what a
build Job needs.

Credentials: the template's client id, secret and tenant default to `ARM_CLIENT_ID`,
`ARM_CLIENT_SECRET` and `ARM_TENANT_ID`, which a GoldenImage's `credentials.azure.secretRef`
Secret puts into the build Job's environment. Without them Packer 1.6.6 falls back to the
managed identity of the machine it runs on.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from ...api.goldenimage import AzureMarketplaceSource, AzureTarget, Target
from ...api.imagechannel import Publish
from ...api.result import ReportedArtifact
from ...api.types import CloudName
from ...config import Config
from ...hcl import Block, Expr, template
from ..base import Capabilities, PackerReport, SourceContext
from ..connection import communicator

# Azure's agent holds the provisioning user and its own state: deprovisioned last, as Azure
# requires of generalized Linux images.
GENERALIZE = ("if command -v waagent >/dev/null 2>&1; then waagent -force -deprovision+user; fi", "sync")

# Packer reports the gallery image version only in its artifact string; manifest.json holds the
# intermediate managed image.
_GALLERY_ID = re.compile(r"ManagedImageSharedImageGalleryId:\s*(/subscriptions/\S+)")
# A version Packer reports has finished its creation, which on Azure includes replication to
# every target region (the creation fails if a region fails).
REPLICATED = "Completed"


def settings(target: Target) -> AzureTarget:
    assert target.azure is not None, f"target {target.name} is not an Azure target"
    return target.azure


def normalize(location: str) -> str:
    """A location as requests spell it: `West Europe` -> `westeurope`."""
    return location.replace(" ", "").lower()


@dataclass(frozen=True)
class GalleryVersion:
    """The parts of a gallery image version's resource id."""

    subscription: str
    resource_group: str
    gallery: str
    image: str
    version: str

    @classmethod
    def parse(cls, resource_id: str) -> GalleryVersion:
        """Raises ValueError for anything but a gallery image version id."""
        parts = [p for p in resource_id.strip().split("/") if p]
        low = [p.lower() for p in parts]
        shape = ["subscriptions", "resourcegroups", "providers", "galleries", "images", "versions"]
        if len(parts) != 12 or [low[i] for i in (0, 2, 4, 6, 8, 10)] != shape or low[5] != "microsoft.compute":
            raise ValueError(f"not a gallery image version id: {resource_id!r}")
        return cls(parts[1], parts[3], parts[7], parts[9], parts[11])

    @property
    def definition_id(self) -> str:
        return (
            f"/subscriptions/{self.subscription}/resourceGroups/{self.resource_group}/providers/Microsoft.Compute"
            f"/galleries/{self.gallery}/images/{self.image}"
        )

    @property
    def id(self) -> str:
        return f"{self.definition_id}/versions/{self.version}"


@dataclass(frozen=True)
class ResourceRef:
    """The parts of any resource id in a resource group:
    `/subscriptions/S/resourceGroups/G/providers/NS/type/name[/type/name...]`."""

    subscription: str
    resource_group: str
    type: str  # e.g. Microsoft.Compute/galleries/images/versions
    names: tuple[str, ...]

    @property
    def name(self) -> str:
        return self.names[-1]

    @classmethod
    def parse(cls, resource_id: str) -> ResourceRef:
        """Raises ValueError for anything but a resource id below a resource group."""
        parts = [p for p in resource_id.strip().split("/") if p]
        low = [p.lower() for p in parts]
        if len(parts) < 8 or low[0] != "subscriptions" or low[2] != "resourcegroups" or low[4] != "providers":
            raise ValueError(f"not a resource id: {resource_id!r}")
        rest = parts[6:]
        if len(rest) % 2:
            raise ValueError(f"not a resource id: {resource_id!r}")
        types = "/".join(rest[0::2])
        return cls(parts[1], parts[3], f"{parts[5]}/{types}", tuple(rest[1::2]))


def version_key(version: str) -> tuple[int, ...]:
    """A dotted version as numbers, for ordering (`1.10.0` after `1.9.0`); what does not parse
    sorts first."""
    try:
        return tuple(int(part) for part in version.split("."))
    except ValueError:
        return (-1,)


def gallery_image_version(resource_id: str) -> dict[str, object]:
    """The parts Packer 1.6.6 wants of a gallery image version's resource id."""
    ref = GalleryVersion.parse(resource_id)
    return {
        "subscription": ref.subscription,
        "resource_group": ref.resource_group,
        "gallery_name": ref.gallery,
        "image_name": ref.image,
        "image_version": ref.version,
    }


def marketplace_urn(source: AzureMarketplaceSource, version: str) -> str:
    """How the operator records a Marketplace image: `publisher:offer:sku:version`, as the
    Azure CLI names them."""
    return f"{source.publisher}:{source.offer}:{source.sku}:{version}"


def urn_version(urn: str) -> str:
    """The version of a Marketplace URN (a bare version is returned as it is)."""
    return urn.rsplit(":", 1)[-1]


class Azure:
    name: CloudName = "azure"
    builder: str = "azure-arm"
    capabilities: Capabilities = Capabilities(
        resolve_sources=True, validate=True, publish=True, deprecate=True, delete=True, sweep=True
    )
    sensitive_env: tuple[str, ...] = ("ARM_CLIENT_SECRET", "AZURE_CLIENT_SECRET")

    def location(self, target: Target) -> str:
        return settings(target).location

    def regions(self, target: Target) -> tuple[str, ...]:
        azure = settings(target)
        return (azure.location, *(r for r in azure.gallery.replication_regions if r != azure.location))

    def login_user(self, target: Target) -> str:
        return settings(target).ssh_username

    def tag_key(self, key: str) -> str:
        """Azure tag names may not contain < > % & \\ ? /."""
        return re.sub(r"[<>%&\\?/]", "_", key)

    def tags(self, tags: Mapping[str, str]) -> dict[str, str]:
        return {self.tag_key(k): v for k, v in tags.items()}

    def variables(self, target: Target) -> list[Block]:
        blocks = []
        for name, env in (
            ("client_id", "ARM_CLIENT_ID"),
            ("client_secret", "ARM_CLIENT_SECRET"),
            ("tenant_id", "ARM_TENANT_ID"),
        ):
            attrs: dict[str, object] = {"type": Expr("string"), "default": Expr(f'env("{env}")')}
            if name == "client_secret":
                attrs["sensitive"] = True
            blocks.append(Block("variable", (f"azure_{name}",), attrs))
        return blocks

    def source(self, target: Target, context: SourceContext) -> Block:
        az = settings(target)
        gallery = az.gallery
        attrs: dict[str, object] = {
            "subscription_id": az.subscription_id,
            # A service principal from the credentials Secret, else the workload's managed identity.
            "client_id": Expr("var.azure_client_id"),
            "client_secret": Expr("var.azure_client_secret"),
            "tenant_id": Expr("var.azure_tenant_id"),
            "location": az.location,
            "vm_size": az.vm_size,
            "os_type": az.os_type,
        }
        if az.source.marketplace is not None:
            m = az.source.marketplace
            attrs |= {
                "image_publisher": m.publisher,
                "image_offer": m.offer,
                "image_sku": m.sku,
                # The version the operator resolved `latest` to: a new Marketplace version is a
                # new build (through the fingerprint), never a silent change inside one.
                "image_version": urn_version(context.source_image) if context.source_image else m.version,
            }
        attrs |= {
            "managed_image_name": context.artifact_name,
            "managed_image_resource_group_name": az.resource_group,
            # Created excluded from the definition's latest: only a channel's publication (after
            # validation) may make a version what `latest` serves.
            "shared_gallery_image_version_exclude_from_latest": True,
            "azure_tags": context.tags,
            **communicator(context.communicator, az.ssh_username, {}),
        }
        block = Block("source", (self.builder, target.name), attrs)
        if az.source.gallery_image_version_id is not None:
            block.add(
                Block("shared_image_gallery", attributes=gallery_image_version(az.source.gallery_image_version_id))
            )
        block.add(
            Block(
                "shared_image_gallery_destination",
                attributes={
                    "subscription": az.subscription_id,
                    "resource_group": gallery.resource_group or az.resource_group,
                    "gallery_name": gallery.name,
                    "image_name": gallery.image_definition,
                    # Gallery versions are Major.Minor.Patch: the image version, then the attempt.
                    "image_version": Expr(template(f"{context.build.version}.0.${{var.attempt}}")),
                    "replication_regions": list(self.regions(target)),
                },
            )
        )
        return block

    def generalize(self, target: Target) -> tuple[str, ...]:
        return GENERALIZE

    def artifacts(self, target: Target, report: PackerReport) -> list[ReportedArtifact]:
        """The gallery image version of each artifact string, once per region it is replicated
        to. The managed image in `report.ids` is only the version's source, deleted after the
        build."""
        versions = [m.group(1) for text in report.strings for m in _GALLERY_ID.finditer(text)]
        return [
            ReportedArtifact(region=region, id=version, state=REPLICATED)
            for version in dict.fromkeys(versions)
            for region in self.regions(target)
        ]

    def job_env(self, target: Target, config: Config) -> list[dict[str, Any]]:
        return []

    def publish_section(self, publish: Publish) -> BaseModel | None:
        return publish.azure

    def publish_refusal(self, section: BaseModel, namespace: str, prefix: str | None) -> str | None:
        return None  # the platform's prefix rule is about SSM parameter paths


KIND = Azure()
