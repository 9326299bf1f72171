"""Reading the ConfigMap keys a recipe refers to (each ConfigMap once)."""

from __future__ import annotations

from typing import Any

from ..api.goldenimage import GoldenImageSpec
from ..kube.client import CONFIGMAPS, Kube
from ..packer import inputs as packer_inputs


async def read(kube: Kube, namespace: str, recipe: GoldenImageSpec) -> dict[str, str]:
    """The content of every key the recipe reads that exists, by "name/key"; a missing key is
    absent."""
    out: dict[str, str] = {}
    config_maps: dict[str, dict[str, Any] | None] = {}
    for ref in packer_inputs.refs(recipe):
        if ref.config_map not in config_maps:
            config_maps[ref.config_map] = await kube.get(CONFIGMAPS, namespace, ref.config_map)
        data = (config_maps[ref.config_map] or {}).get("data") or {}
        if ref.key in data:
            out[str(ref)] = data[ref.key]
    return out
