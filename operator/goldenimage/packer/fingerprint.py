"""The fingerprint that decides whether a new version is needed: a digest over everything that
shapes the image and nothing that does not (credentials, timeouts, validation, rebuild and
retention policy and revocations leave it alone)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ..api.goldenimage import GoldenImageSpec
from .inputs import digest

# The parts of a spec that change what is built.
IMAGE_FIELDS = frozenset({"targets", "provisioners", "generalize", "template", "tags", "secret_variables"})


def image_recipe(recipe: GoldenImageSpec) -> dict[str, Any]:
    """The recipe's image-shaping fields, on the wire, defaults included (so that writing a
    default explicitly is not a change)."""
    return recipe.model_dump(mode="json", by_alias=True, include=set(IMAGE_FIELDS))


def fingerprint(
    recipe: GoldenImageSpec,
    *,
    sources: Mapping[str, str],
    inputs: Mapping[str, str],
    runner: str,
) -> str:
    """sha256 over the canonical recipe, the resolved source images (by target), the digests of
    the ConfigMap inputs (by "configmap/key") and the runner image (which pins Packer)."""
    document = {
        "recipe": image_recipe(recipe),
        "sources": dict(sources),
        "inputs": dict(inputs),
        "runner": runner,
    }
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return digest(canonical)
