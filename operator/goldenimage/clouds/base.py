"""What the operator needs from a cloud, whichever it is."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from ..api.goldenimage import Target, Validation


class CloudError(Exception):
    """A cloud call failed in a way that may pass (throttling, outage): try again later."""


class ForeignArtifactError(Exception):
    """An artifact on record does not carry the build's id (a user template that did not tag it):
    it is never deleted, and trying again will not change that."""


class SourceNotFoundError(Exception):
    """A source selector matches no image: waiting will not help until the spec or cloud changes."""


@dataclass(frozen=True)
class Resource:
    kind: str  # image, snapshot, instance, volume, key-pair, security-group
    region: str
    id: str

    def __str__(self) -> str:
        return f"{self.kind} {self.id} in {self.region}"


@dataclass(frozen=True)
class Instance:
    """A validation instance; `address` is what checks connect to, once it is known."""

    id: str
    region: str
    address: str | None = None
    public: bool = False  # connect to the public address rather than the private one


@dataclass(frozen=True)
class Pointer:
    """Where a channel points in one region of one target, for publication."""

    target: str
    region: str
    image: str


class Cloud(Protocol):
    name: str

    def resolve_source(self, target: Target) -> str | None:
        """The image a target's source selector picks now; None when the selector is already an
        exact image the build should use as written."""

    def find_artifacts(self, build_id: str, regions: Sequence[str]) -> list[Resource]:
        """Images carrying the build id (recorded or not)."""

    def delete_artifact(self, region: str, artifact_id: str, build_id: str) -> list[Resource]:
        """Delete an image and what it consists of (e.g. an AMI and its snapshots), if it carries
        the build id (else ForeignArtifactError); a missing image counts as deleted. Returns what went."""

    def leftovers(
        self, build_id: str, regions: Sequence[str], target: str | None = None, attempt: int | None = None
    ) -> list[Resource]:
        """Temporary build resources that still exist (instances, volumes, key pairs, groups), of
        the whole build or only of one target's attempt."""

    def sweep(
        self, build_id: str, regions: Sequence[str], target: str | None = None, attempt: int | None = None
    ) -> list[Resource]:
        """Delete the leftovers; returns what was deleted."""

    def missing_artifacts(self, artifacts: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
        """Which of the (region, id) images no longer exist (or are no longer usable)."""

    def deprecate(self, region: str, artifact_id: str, reason: str) -> str | None:
        """Mark an image deprecated (a tag, and the cloud's own deprecation where it has one).
        Returns a note when only part of that was possible."""

    # -- validation ------------------------------------------------------------------------

    def launch(
        self, target: Target, region: str, image: str, validation: Validation | None, tags: Mapping[str, str]
    ) -> Instance:
        """Start an instance from an image for validation, carrying `tags`."""

    def ready(self, instance: Instance) -> Instance | None:
        """The instance with its address once it runs and passes the cloud's status checks; None
        while it is still starting. Raises CloudError if it cannot become ready."""

    def run_command(self, instance: Instance, command: str, timeout: float) -> tuple[int, str]:
        """Run a shell command on the instance through the cloud's agent: (exit code, output)."""

    def terminate(self, instance: Instance) -> None:
        """Stop and delete the instance; a missing instance counts as terminated."""

    # -- publication -----------------------------------------------------------------------

    def publish(
        self,
        scope: Mapping[str, str],
        publish: Mapping[str, object],
        current: Sequence[Pointer],
        previous: Sequence[Pointer],
    ) -> list[str]:
        """Make the cloud's pointers (parameters, tags, labels) say `current`; remove what only
        `previous` had. `publish` is the channel's section for this cloud; `scope` are the tags
        of the images the channel may touch. Returns what changed."""
