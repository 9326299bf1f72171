"""What is pure about GCP: labels as GCP spells them, image paths, the region an image is recorded
in, image names in Packer's report, and the googlecompute source block (source selection,
credentials, storage location, the builder's name)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from goldenimage.api import labels
from goldenimage.api.goldenimage import Target
from goldenimage.api.imagechannel import Publish
from goldenimage.clouds import registry
from goldenimage.clouds.base import PackerReport
from goldenimage.clouds.gcp.adapter import builder_name_pattern
from goldenimage.clouds.gcp.kind import (
    CREDENTIALS_ENV,
    CREDENTIALS_VARIABLE,
    KIND,
    image_path,
    label_key,
    label_value,
    parse_image,
    region_of,
)
from goldenimage.hcl import Expr, render
from goldenimage.packer.render import Settings, render_target, source_context, temporary_name
from support import recipes

LABEL = re.compile(r"[a-z][a-z0-9_-]{0,62}")
VALUE = re.compile(r"[a-z0-9_-]{0,63}")


def _target(source: dict[str, str] | None = None, **gcp: Any) -> Target:
    spec: dict[str, Any] = {
        "project": "platform-images",
        "zone": "europe-west1-b",
        "source": source or {"family": "debian-12", "project": "debian-cloud"},
    }
    spec.update(gcp)
    return Target.model_validate({"name": "gcp-eu", "gcp": spec})


def _source(target: Target, resolved: str | None = None, communicator: str = "ssh") -> dict[str, object]:
    settings = Settings(communicator="none") if communicator == "none" else Settings()
    return KIND.source(target, source_context(target, recipes.CTX, resolved, settings)).attributes


# -- labels -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "spelled"),
    [
        (labels.BUILD_ID, "goldenimage-io_build-id"),
        (labels.MANAGED_BY, "app-kubernetes-io_managed-by"),
        ("Team", "team"),
        ("cost center", "cost-center"),
        ("9lives", "t9lives"),
        ("", "t"),
        ("x" * 80, "x" * 63),
    ],
)
def test_label_keys_are_spelled_as_gcp_accepts_them(key: str, spelled: str) -> None:
    assert label_key(key) == KIND.tag_key(key) == spelled
    assert LABEL.fullmatch(spelled)


@pytest.mark.parametrize(
    ("value", "spelled"),
    [
        ("web-base-7-1a2b3c4d", "web-base-7-1a2b3c4d"),
        ("CVE-2026-1234: openssl", "cve-2026-1234--openssl"),
        ("Platform Team", "platform-team"),
        ("", ""),
        ("v" * 70, "v" * 63),
    ],
)
def test_label_values_are_spelled_as_gcp_accepts_them(value: str, spelled: str) -> None:
    assert label_value(value) == spelled
    assert VALUE.fullmatch(spelled)


def test_tags_become_labels_keys_and_values_alike() -> None:
    tags = {labels.BUILD_ID: "Web-Base-7-1A2B3C4D", "Role": "web/front"}
    assert KIND.tags(tags) == {"goldenimage-io_build-id": "web-base-7-1a2b3c4d", "role": "web-front"}


# -- images and regions -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ref", "parsed"),
    [
        ("projects/platform-images/global/images/web-base-7-a1", ("platform-images", "web-base-7-a1")),
        (
            "https://compute.googleapis.com/compute/v1/projects/debian-cloud/global/images/debian-12-bookworm-v1",
            ("debian-cloud", "debian-12-bookworm-v1"),
        ),
        ("https://www.googleapis.com/compute/beta/projects/p/global/images/i", ("p", "i")),
        ("  web-base-7-a1 ", (None, "web-base-7-a1")),
        # Not an image path: taken as a name, which the API then refuses.
        ("projects/p/zones/z/disks/d", (None, "projects/p/zones/z/disks/d")),
    ],
)
def test_image_references_parse_to_project_and_name(ref: str, parsed: tuple[str | None, str]) -> None:
    assert parse_image(ref) == parsed


def test_an_image_path_round_trips() -> None:
    assert parse_image(image_path("platform-images", "web-base-7-a1")) == ("platform-images", "web-base-7-a1")


def test_the_recorded_region_is_where_the_image_is_stored() -> None:
    assert region_of("europe-west1-b") == "europe-west1"
    assert KIND.regions(_target()) == ("europe-west1",)
    assert KIND.regions(_target(storageLocations=["eu"])) == ("eu",)
    assert KIND.location(_target()) == "europe-west1-b"


def test_packers_image_names_are_recorded_as_paths_in_the_targets_project() -> None:
    target = _target(storageLocations=["eu"])
    report = PackerReport(
        ids=(
            "web-base-7-1a2b3c4d-a1",
            "",
            "web-base-7-1a2b3c4d-a1",  # the same image twice (a retried post-processor)
            "projects/shared-images/global/images/web-base-7-1a2b3c4d-a2",
        ),
        strings=("A disk image was created: web-base-7-1a2b3c4d-a1",),
    )
    found = [(a.region, a.id) for a in KIND.artifacts(target, report)]
    assert found == [
        ("eu", "projects/platform-images/global/images/web-base-7-1a2b3c4d-a1"),
        ("eu", "projects/shared-images/global/images/web-base-7-1a2b3c4d-a2"),
    ]
    assert KIND.artifacts(target, PackerReport()) == []


# -- the source block -------------------------------------------------------------------------


def test_a_family_is_built_from_the_exact_image_it_resolved_to() -> None:
    target = _target()
    unresolved = _source(target)
    assert unresolved["source_image_family"] == "debian-12"
    assert "source_image" not in unresolved
    resolved = _source(target, "debian-12-bookworm-v20250428")
    assert resolved["source_image"] == "debian-12-bookworm-v20250428"
    assert "source_image_family" not in resolved
    assert resolved["source_image_project_id"] == ["debian-cloud"]


def test_an_explicit_image_in_the_targets_own_project_is_used_as_written() -> None:
    attributes = _source(_target({"image": "base-2025"}))
    assert attributes["source_image"] == "base-2025"
    assert "source_image_project_id" not in attributes and "source_image_family" not in attributes


def test_the_image_joins_no_family_and_is_stored_where_it_is_recorded() -> None:
    target = _target(storageLocations=["eu"], network="builds", subnetwork="builds-eu", diskSizeGb=30)
    attributes = _source(target)
    assert "image_family" not in attributes
    assert attributes["image_storage_locations"] == ["eu"]
    assert attributes["image_labels"] == attributes["labels"] == Expr("local.resource_tags")
    assert (attributes["network"], attributes["subnetwork"], attributes["disk_size"]) == ("builds", "builds-eu", 30)
    assert _source(_target())["image_storage_locations"] == ["europe-west1"]


def test_credentials_come_from_a_sensitive_variable_defaulting_to_the_secrets_key() -> None:
    assert _source(_target())["account_file"] == Expr(f"var.{CREDENTIALS_VARIABLE}")
    (variable,) = KIND.variables(_target())
    text = render([variable])
    assert f'variable "{CREDENTIALS_VARIABLE}"' in text
    assert f'default   = env("{CREDENTIALS_ENV}")' in text
    assert "sensitive = true" in text
    assert CREDENTIALS_ENV in KIND.sensitive_env


def test_the_builders_instance_is_named_after_build_target_and_attempt_within_gces_limit() -> None:
    target = Target.model_validate(
        {
            "name": "gcp-a-long-target-name-here-xyz",
            "gcp": {"project": "p-1234", "zone": "us-central1-a", "source": {"family": "f"}},
        }
    )
    name = _source(target)["instance_name"]
    assert isinstance(name, Expr)
    stem = name.text.strip('"').removesuffix("-a${var.attempt}")
    assert stem.startswith("packer-web-base-7-1a2b3c4d-") and len(stem) <= 56
    assert len(stem) + len("-a99999") <= 63


def test_ssh_through_the_internal_address_or_no_communicator() -> None:
    ssh = _source(_target(sshUsername="builder"))
    assert (ssh["communicator"], ssh["ssh_username"], ssh["use_internal_ip"]) == ("ssh", "builder", True)
    assert KIND.login_user(_target(sshUsername="builder")) == "builder"
    none = _source(_target(), communicator="none")
    assert none["communicator"] == "none" and "ssh_username" not in none


def test_a_rendered_template_names_no_endpoint() -> None:
    """The SDK's and Packer's default endpoints: the local stack reaches its fake through the
    proxy, never through the template."""
    spec = recipes.example("web-base-gcp").spec
    target = next(t for t in spec.targets if t.gcp is not None)
    text = render_target(spec, target, recipes.CTX, source="debian-12-bookworm-v20250428")
    assert "endpoint" not in text and "googleapis" not in text
    assert re.search(r'\n  source_image += "debian-12-bookworm-v20250428"\n', text)


def test_every_capability_and_the_channels_gcp_section() -> None:
    assert registry.kind("gcp") is KIND
    capabilities = KIND.capabilities
    assert all(
        (
            capabilities.resolve_sources,
            capabilities.validate,
            capabilities.publish,
            capabilities.deprecate,
            capabilities.delete,
            capabilities.sweep,
        )
    )
    publish = Publish.model_validate({"gcp": {"family": "web-base-candidate"}})
    assert KIND.publish_section(publish) is publish.gcp
    assert KIND.publish_section(Publish()) is None
    assert KIND.generalize(_target()) == ()


def test_leftovers_are_found_by_the_name_the_renderer_gives_the_builder() -> None:
    """Packer 1.6.6 labels its instance but not the instance's disk, which has the same name."""
    target = _target()
    long = Target.model_validate({**target.model_dump(by_alias=True), "name": "gcp-a-long-target-name-here-xyz"})
    for named in (target, long):
        rendered = f"{temporary_name(recipes.CTX, named, 56)}-a2"
        assert re.fullmatch(builder_name_pattern(recipes.CTX.build_id, named.name, 2), rendered)
        assert re.fullmatch(builder_name_pattern(recipes.CTX.build_id, named.name, None), rendered)
        assert re.fullmatch(builder_name_pattern(recipes.CTX.build_id, None, None), rendered)
        assert not re.fullmatch(builder_name_pattern(recipes.CTX.build_id, named.name, 1), rendered)
        assert not re.fullmatch(builder_name_pattern("web-base-8-99999999", None, None), rendered)
