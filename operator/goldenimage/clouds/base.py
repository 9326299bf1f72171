"""What the operator needs from a cloud, whichever it is."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from ..api.goldenimage import Target


class CloudError(Exception):
    """A cloud call failed in a way that may pass (throttling, outage): try again later."""


class SourceNotFoundError(Exception):
    """A source selector matches no image: waiting will not help until the spec or cloud changes."""


@dataclass(frozen=True)
class Resource:
    kind: str  # image, snapshot, instance, volume, key-pair, security-group
    region: str
    id: str

    def __str__(self) -> str:
        return f"{self.kind} {self.id} in {self.region}"


class Cloud(Protocol):
    name: str

    def resolve_source(self, target: Target) -> str | None:
        """The image a target's source selector picks now; None when the selector is already an
        exact image the build should use as written."""

    def find_artifacts(self, build_id: str, regions: Sequence[str]) -> list[Resource]:
        """Images carrying the build id (recorded or not)."""

    def delete_artifact(self, region: str, artifact_id: str) -> list[Resource]:
        """Delete an image and what it consists of (e.g. an AMI and its snapshots); a missing
        image counts as deleted. Returns what was deleted."""

    def leftovers(self, build_id: str, regions: Sequence[str]) -> list[Resource]:
        """Temporary build resources that still exist: instances, volumes, key pairs, groups."""

    def sweep(self, build_id: str, regions: Sequence[str]) -> list[Resource]:
        """Delete the leftovers; returns what was deleted."""
