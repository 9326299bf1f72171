"""Manifests of the project's kinds, with what a test does not care about filled in."""

from __future__ import annotations

from typing import Any

from goldenimage.api.group import API_VERSION

from . import recipes


def golden_image(name: str, *, target: dict[str, Any], **spec: Any) -> dict[str, Any]:
    """A GoldenImage with one AWS target, named aws, that `target` describes (logging in as the
    Debian images' user unless it says otherwise)."""
    return {
        "apiVersion": API_VERSION,
        "kind": "GoldenImage",
        "metadata": {"name": name},
        "spec": {"targets": [{"name": "aws", "aws": {"sshUsername": "admin", **target}}], **spec},
    }


def image_build(image: str, version: int, *, revoked: str | None = None) -> dict[str, Any]:
    """Version `version` of `image`, built from recipes.AWS_TARGET, named as the operator names it."""
    spec: dict[str, Any] = {
        "image": image,
        "version": version,
        "fingerprint": "sha256:" + "ab" * 32,
        "reason": "Initial",
        "sources": {"aws-eu": "ami-0123456789abcdef0"},
        "recipe": {"targets": [recipes.AWS_TARGET]},
    }
    if revoked:
        spec["revoked"] = {"reason": revoked}
    return {"apiVersion": API_VERSION, "kind": "ImageBuild", "metadata": {"name": f"{image}-{version}"}, "spec": spec}


def image_channel(name: str, image: str, source: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    """A channel of `image` that takes the latest validated version unless `source` says otherwise."""
    return {
        "apiVersion": API_VERSION,
        "kind": "ImageChannel",
        "metadata": {"name": name},
        "spec": {"image": image, "source": source or {"latestValidated": {}}, **spec},
    }
