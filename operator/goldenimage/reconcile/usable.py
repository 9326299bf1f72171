"""Whether a version can be pointed at, and which builds a channel holds on to: decided here
only, for the channel planner, the handlers and `kubectl golden` alike.

A channel never points at a build that is unvalidated, failed, revoked, or whose artifacts are
missing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from ..api import names
from ..api.conditions import find
from ..api.goldenimage import Credentials
from ..api.imagechannel import ChannelArtifact, PromotionReason
from ..api.resources import ImageBuild

Unusable = Literal["NotFound", "Revoked", "NotValidated", "ArtifactsMissing"]

# The history reason of a fallback, by why the entry it replaced became unusable.
FALLBACK: dict[Unusable, PromotionReason] = {
    "NotFound": "BuildMissing",
    "Revoked": "Revoked",
    "NotValidated": "NotValidated",
    "ArtifactsMissing": "ArtifactsMissing",
}


@dataclass(frozen=True)
class BuildView:
    """What a channel needs to know of one build of its image."""

    name: str
    version: int
    fingerprint: str
    artifacts: tuple[ChannelArtifact, ...]
    validated_at: datetime | None = None  # when Validated turned True; None when it is not
    revoked: str | None = None  # the revocation reason
    state: str = ""  # the build's Ready reason, for messages
    missing: tuple[ChannelArtifact, ...] = ()  # artifacts found gone from their cloud
    uid: str = ""
    credentials: Credentials | None = None  # the recipe's, which publication uses

    @classmethod
    def of(cls, build: ImageBuild) -> BuildView:
        status = build.status
        artifacts = tuple(
            ChannelArtifact(target=t.name, cloud=t.cloud, region=a.region, id=a.id)
            for t in (status.targets if status else [])
            if t.phase == "Succeeded"
            for a in t.artifacts
        )
        gone = {(m.region, m.id) for m in (status.missing_artifacts if status else [])}
        validated = find(status.conditions, "Validated") if status else None
        ready = find(status.conditions, "Ready") if status else None
        return cls(
            name=build.metadata.name,
            version=build.spec.version,
            fingerprint=build.spec.fingerprint,
            artifacts=artifacts,
            validated_at=validated.last_transition_time
            if validated is not None and validated.status == "True"
            else None,
            revoked=build.spec.revoked.reason if build.spec.revoked is not None else None,
            state=ready.reason if ready is not None else "",
            missing=tuple(a for a in artifacts if (a.region, a.id) in gone),
            uid=build.metadata.uid or "",
            credentials=build.spec.recipe.credentials,
        )


@dataclass(frozen=True)
class Verdict:
    usable: bool
    reason: Unusable | None = None
    message: str = ""


USABLE = Verdict(True)
# At most this many missing artifacts are named in a message; the rest are counted.
NAMED = 5


def verdict(version: int, build: BuildView | None) -> Verdict:
    """Whether a channel may point at `version`, and why not."""
    if build is None:
        return Verdict(False, "NotFound", f"version {version} has no ImageBuild")
    if build.revoked is not None:
        return Verdict(False, "Revoked", f"version {version} is revoked: {build.revoked}")
    if build.validated_at is None or not build.artifacts:
        state = f" ({build.state})" if build.state else ""
        return Verdict(False, "NotValidated", f"version {version} is not validated{state}")
    if build.missing:
        listed = ", ".join(f"{a.id} in {a.region}" for a in build.missing[:NAMED])
        more = f" and {len(build.missing) - NAMED} more" if len(build.missing) > NAMED else ""
        return Verdict(False, "ArtifactsMissing", f"version {version} lost artifacts: {listed}{more}")
    return USABLE


def references(channel: Mapping[str, Any], image: str) -> set[str]:
    """The builds of `image` (by name) a channel points at, pointed at, or is pinned to; read from
    the raw object, so that a channel the models would refuse still protects its builds."""
    spec = channel.get("spec") or {}
    if not isinstance(spec, Mapping) or spec.get("image") != image:
        return set()
    state = channel.get("status") or {}
    entries = [state.get("current"), *(state.get("history") or [])] if isinstance(state, Mapping) else []
    out = {str(e.get("build", "")) for e in entries if isinstance(e, Mapping) and e.get("build")}
    version = spec.get("version")
    if isinstance(version, int) and version >= 1:
        out.add(names.build(image, version))
    return out
