"""Revocations declared on a GoldenImage (`spec.revocations`) as channels and `kubectl golden` see
them: a declared version counts as revoked from the moment it is declared, before the operator
has revoked its ImageBuild, so that no channel takes it in between."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from .usable import BuildView


def declared(image: Mapping[str, Any] | None) -> dict[int, str]:
    """The versions a GoldenImage (as stored) declares revoked, with their reasons; read from the
    raw object, so that an image the models refuse still withholds what it declares."""
    spec = (image or {}).get("spec")
    entries = spec.get("revocations") if isinstance(spec, Mapping) else None
    if not isinstance(entries, list):
        return {}
    return {
        e["version"]: str(e.get("reason") or "")
        for e in entries
        if isinstance(e, Mapping) and isinstance(e.get("version"), int) and not isinstance(e.get("version"), bool)
    }


def seen(view: BuildView, revoked: Mapping[int, str]) -> BuildView:
    """The build as a channel must see it: revoked when its image declares it so."""
    if view.revoked is not None or view.version not in revoked:
        return view
    return dataclasses.replace(view, revoked=revoked[view.version])
