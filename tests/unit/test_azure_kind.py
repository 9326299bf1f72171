"""What is pure about Azure: gallery version ids from Packer's artifact string, resource ids, the
Marketplace version rendered from a resolved URN, regions, tag spelling and version order."""

from __future__ import annotations

import re
from typing import Any

import pytest

from goldenimage.api.goldenimage import Target
from goldenimage.clouds.azure.kind import (
    KIND,
    REPLICATED,
    GalleryVersion,
    ResourceRef,
    gallery_image_version,
    marketplace_urn,
    normalize,
    urn_version,
    version_key,
)
from goldenimage.clouds.base import PackerReport
from goldenimage.packer.render import Settings, render_target
from support import recipes

SUB = "00000000-0000-0000-0000-000000000000"
VERSION_ID = (
    f"/subscriptions/{SUB}/resourceGroups/rg-images/providers/Microsoft.Compute/galleries/platform_gallery"
    "/images/web-base/versions/7.0.1"
)
MANAGED_IMAGE = f"/subscriptions/{SUB}/resourceGroups/rg-images/providers/Microsoft.Compute/images/web-base-7-a1"
# Packer 1.6.6's artifact string for a gallery destination (from its -machine-readable output).
ARTIFACT_STRING = (
    "Azure.ResourceManagement.VMImage:\n\n"
    "OSType: Linux\n"
    f"ManagedImageResourceGroupName: rg-images\nManagedImageName: web-base-7-a1\nManagedImageId: {MANAGED_IMAGE}\n"
    "ManagedImageLocation: westeurope\n"
    f"ManagedImageSharedImageGalleryId: {VERSION_ID}\n"
)


def _target(**azure: Any) -> Target:
    spec: dict[str, Any] = {
        "subscriptionId": SUB,
        "resourceGroup": "rg-images",
        "location": "westeurope",
        "source": {"marketplace": {"publisher": "Debian", "offer": "debian-12", "sku": "12-gen2"}},
        "gallery": {"name": "platform_gallery", "imageDefinition": "web-base", "replicationRegions": ["northeurope"]},
    }
    spec.update(azure)
    return Target.model_validate({"name": "azure-we", "azure": spec})


def test_the_gallery_version_is_the_artifact_once_per_replication_region() -> None:
    target = _target()
    report = PackerReport(ids=(MANAGED_IMAGE,), strings=(ARTIFACT_STRING, ARTIFACT_STRING))
    found = [(a.region, a.id, a.state) for a in KIND.artifacts(target, report)]
    assert found == [("westeurope", VERSION_ID, REPLICATED), ("northeurope", VERSION_ID, REPLICATED)]


def test_without_a_gallery_id_in_the_artifact_string_nothing_is_reported() -> None:
    # The managed image in manifest.json is only the version's source.
    assert KIND.artifacts(_target(), PackerReport(ids=(MANAGED_IMAGE,), strings=("ManagedImageId: x",))) == []


def test_regions_are_the_location_then_the_other_replication_regions() -> None:
    target = _target(
        location="westeurope",
        gallery={"name": "g", "imageDefinition": "d", "replicationRegions": ["westeurope", "northeurope"]},
    )
    assert KIND.regions(target) == ("westeurope", "northeurope")
    assert normalize("North Europe") == "northeurope"


def test_gallery_version_ids_parse_in_any_case() -> None:
    lowered = VERSION_ID.replace("resourceGroups", "resourcegroups").replace("Microsoft.Compute", "microsoft.compute")
    ref = GalleryVersion.parse(lowered)
    assert (ref.subscription, ref.resource_group, ref.gallery, ref.image, ref.version) == (
        SUB,
        "rg-images",
        "platform_gallery",
        "web-base",
        "7.0.1",
    )
    assert ref.id == VERSION_ID
    assert ref.definition_id == VERSION_ID.rsplit("/versions/", 1)[0]
    assert gallery_image_version(VERSION_ID)["image_version"] == "7.0.1"


@pytest.mark.parametrize(
    "text",
    [
        MANAGED_IMAGE,
        VERSION_ID + "/extra",
        VERSION_ID.replace("Microsoft.Compute", "Microsoft.Network"),
        "7.0.1",
        "",
    ],
)
def test_anything_else_is_not_a_gallery_version(text: str) -> None:
    with pytest.raises(ValueError, match="not a gallery image version id"):
        GalleryVersion.parse(text)


def test_resource_ids_split_into_subscription_group_type_and_names() -> None:
    version = ResourceRef.parse(VERSION_ID)
    assert version.type == "Microsoft.Compute/galleries/images/versions"
    assert version.names == ("platform_gallery", "web-base", "7.0.1")
    assert version.name == "7.0.1"
    disk = ResourceRef.parse(
        f"/subscriptions/{SUB}/resourcegroups/pkr-Resource-Group-x/providers/Microsoft.Compute/disks/d"
    )
    assert (disk.subscription, disk.resource_group, disk.type, disk.name) == (
        SUB,
        "pkr-Resource-Group-x",
        "Microsoft.Compute/disks",
        "d",
    )
    for bad in (f"/subscriptions/{SUB}/resourceGroups/rg", f"/subscriptions/{SUB}/resourceGroups/rg/providers/X/y"):
        with pytest.raises(ValueError, match="not a resource id"):
            ResourceRef.parse(bad)


def test_versions_order_by_number_not_text() -> None:
    names = ["0.20250428.2097", "0.20250210.2019", "0.9.0", "0.10.0", "latest"]
    assert sorted(names, key=version_key) == ["latest", "0.9.0", "0.10.0", "0.20250210.2019", "0.20250428.2097"]


def test_a_resolved_marketplace_version_is_rendered_exactly() -> None:
    spec = recipes.example("web-base-azure").spec
    target = next(t for t in spec.targets if t.azure is not None)
    assert target.azure is not None and target.azure.source.marketplace is not None
    urn = marketplace_urn(target.azure.source.marketplace, "0.20250428.2097")
    assert urn == "Debian:debian-12:12-gen2:0.20250428.2097"
    assert urn_version(urn) == "0.20250428.2097"
    text = render_target(spec, target, recipes.CTX, source=urn, settings=Settings())
    assert re.search(r'\n  image_version +\= "0\.20250428\.2097"\n', text)
    # Created excluded from latest: only a channel's publication may make it what latest serves.
    assert re.search(r"\n  shared_gallery_image_version_exclude_from_latest += true\n", text)


def test_tag_keys_lose_the_characters_azure_refuses() -> None:
    assert KIND.tag_key("goldenimage.io/build-id") == "goldenimage.io_build-id"
    assert KIND.tags({"a<b>c%d&e\\f?g/h": "v/alue"}) == {"a_b_c_d_e_f_g_h": "v/alue"}
