"""Who a build is, as every layer names it: its object, its version and the build id that marks
everything it creates in a cloud."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from . import names
from .resources import ImageBuild


@dataclass(frozen=True)
class BuildIdentity:
    namespace: str
    image: str
    build: str  # the ImageBuild's name, <image>-<version>
    version: int
    uid: str
    build_id: str  # value of the build-id tag: <build>-<uid prefix>

    @classmethod
    def of(cls, build: ImageBuild) -> BuildIdentity:
        meta = build.metadata
        return cls(
            namespace=meta.namespace or "",
            image=build.spec.image,
            build=meta.name,
            version=build.spec.version,
            uid=meta.uid or "",
            build_id=names.build_id(meta.name, meta.uid or ""),
        )


def controller_uid(obj: Mapping[str, Any]) -> str | None:
    """The UID of the object's controlling owner, if any: a label is no proof of whose object it
    is, a controller reference set by the API's owner is."""
    owners = obj.get("metadata", {}).get("ownerReferences") or []
    return next((o.get("uid") for o in owners if o.get("controller")), None)
