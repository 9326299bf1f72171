"""What the operator needs from a cloud, in two parts.

`CloudKind` is pure: how a target renders to a Packer source block, which regions its artifacts
land in, how Packer's report names them, how the cloud spells tags, what a Job needs. The
renderer, the planners and the Job builder call it. `CloudApi` talks to the cloud's SDK: source
resolution, artifacts, deletion, sweeps, validation instances and publication. The handlers,
the executor of plans and the runner call it, never the planners.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from pydantic import BaseModel

from ..api.goldenimage import Target, Validation
from ..api.identity import BuildIdentity
from ..api.imagechannel import Publish
from ..api.result import ReportedArtifact
from ..api.types import CloudName
from ..config import Config
from ..hcl import Block, Expr

Communicator = Literal["ssh", "none"]


@dataclass(frozen=True)
class Capabilities:
    """What the operator can do with a cloud's artifacts."""

    resolve_sources: bool = False  # selectors (filters, families, `latest`) resolved to exact images
    validate: bool = False  # artifacts booted and checked
    publish: bool = False  # channel pointers published in the cloud
    deprecate: bool = False  # revoked artifacts marked in the cloud
    delete: bool = False  # artifacts deleted by retention and deletionPolicy: Delete
    sweep: bool = False  # temporary resources of failed attempts found and deleted


@dataclass(frozen=True)
class SourceContext:
    """What the renderer hands a cloud for one target's source block."""

    build: BuildIdentity
    source_image: str | None  # the source the operator resolved; None: the spec's, as written
    artifact_name: Expr  # the image's name: unique per build, target and attempt
    # A temporary resource's name: a prefix of at most that many characters, then the attempt.
    temporary_name: Callable[[int], Expr]
    tags: Expr  # every resource carries these
    description: str
    communicator: Communicator


@dataclass(frozen=True)
class PackerReport:
    """What a finished `packer build` said about its artifacts: the ids in manifest.json of this
    run, and the artifact strings of the machine-readable output."""

    ids: tuple[str, ...] = ()
    strings: tuple[str, ...] = ()


class CloudKind(Protocol):
    """Everything pure that one cloud knows."""

    name: CloudName
    capabilities: Capabilities
    builder: str  # Packer's builder type
    # Environment variables that may hold credentials: never printed by the runner.
    sensitive_env: tuple[str, ...]

    def location(self, target: Target) -> str:
        """Where the build runs: a region, zone or location."""

    def regions(self, target: Target) -> tuple[str, ...]:
        """Every region the target's artifacts are recorded in."""

    def login_user(self, target: Target) -> str:
        """The user Packer logs in as to provision."""

    def tag_key(self, key: str) -> str:
        """A tag key as the cloud accepts it."""

    def tags(self, tags: Mapping[str, str]) -> dict[str, str]:
        """Tags (labels) spelled as the cloud accepts them."""

    def variables(self, target: Target) -> list[Block]:
        """Template variables the source block refers to."""

    def source(self, target: Target, context: SourceContext) -> Block:
        """The Packer source block of the target."""

    def generalize(self, target: Target) -> tuple[str, ...]:
        """Shell lines run last when generalizing, after the common ones."""

    def artifacts(self, target: Target, report: PackerReport) -> list[ReportedArtifact]:
        """Every artifact Packer reported, with its region."""

    def job_env(self, target: Target, config: Config) -> list[dict[str, Any]]:
        """Environment of the target's build Job besides the credentials."""

    def publish_section(self, publish: Publish) -> BaseModel | None:
        """The channel's publication section for this cloud, if any."""

    def publish_refusal(self, section: BaseModel, namespace: str, prefix: str | None) -> str | None:
        """Why the platform's rule (`prefix`, for `namespace`; None: no rule) refuses
        where the section publishes, before any cloud call; None when it does not."""


@dataclass(frozen=True)
class CloudResource:
    """Something the operator or Packer created in a cloud."""

    kind: str  # image, snapshot, instance, volume, key-pair, security-group, disk, ...
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


@dataclass(frozen=True)
class PublishScope:
    """Whose images a channel's publication may touch, and as which channel."""

    namespace: str
    image: str
    channel: str
    uid: str = ""  # the channel's, recorded on what its publication creates
    # SSM parameters the namespace may publish to begin with this (the platform's rule); None: any.
    parameter_prefix: str | None = None


class CloudApi(Protocol):
    """One cloud's SDK-facing adapter. Methods are synchronous: callers run them in threads."""

    name: CloudName

    # -- sources and artifacts -------------------------------------------------------------

    def resolve_source(self, target: Target) -> str | None:
        """The image a target's source selector picks now; None when the selector is already an
        exact image the build should use as written."""

    def find_artifacts(self, build_id: str, regions: Sequence[str]) -> list[CloudResource]:
        """Images carrying the build id (recorded or not)."""

    def delete_artifact(self, region: str, artifact_id: str, build_id: str) -> list[CloudResource]:
        """Delete an image and what it consists of, if it carries the build id (else
        ForeignArtifactError); a missing image counts as deleted. Returns what went."""

    def missing_artifacts(self, artifacts: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
        """Which of the (region, id) images no longer exist (or are no longer usable)."""

    def deprecate(self, region: str, artifact_id: str, reason: str) -> str | None:
        """Mark an image deprecated (a tag, and the cloud's own deprecation where it has one).
        Returns a note when only part of that was possible."""

    # -- leftovers -------------------------------------------------------------------------

    def leftovers(
        self, build_id: str, regions: Sequence[str], target: str | None = None, attempt: int | None = None
    ) -> list[CloudResource]:
        """Temporary resources of the build (or of one target's attempt) that still exist."""

    def sweep(
        self, build_id: str, regions: Sequence[str], target: str | None = None, attempt: int | None = None
    ) -> list[CloudResource]:
        """Delete the leftovers; returns what was deleted."""

    # -- validation ------------------------------------------------------------------------

    def launch(
        self, target: Target, region: str, image: str, validation: Validation | None, tags: Mapping[str, str]
    ) -> Instance:
        """Start an instance from an image for validation, carrying `tags`."""

    def ready(self, instance: Instance) -> Instance | None:
        """The instance with its address once it runs and passes the cloud's status checks; None
        while it is still starting. Raises CloudError if it cannot become ready."""

    def run_command(self, instance: Instance, command: str, timeout: float) -> tuple[int, str]:
        """Run a shell command on the instance: (exit code, output)."""

    def terminate(self, instance: Instance) -> None:
        """Stop and delete the instance; a missing instance counts as terminated."""

    # -- publication -----------------------------------------------------------------------

    def publish(
        self, scope: PublishScope, section: BaseModel, current: Sequence[Pointer], previous: Sequence[Pointer]
    ) -> list[str]:
        """Make the cloud's pointers (parameters, tags, labels) say `current`; remove what only
        `previous` had. Returns what changed."""

    # -- inside the build Job --------------------------------------------------------------

    def build_watcher(self, target: Target, build_id: str, attempt: str) -> Callable[[str], None] | None:
        """Called with every line Packer prints while it builds (e.g. to tag what Packer creates
        untagged), or None."""

    def after_build(self, target: Target, artifacts: Sequence[tuple[str, str]]) -> list[str]:
        """Work Packer cannot do, once the artifacts exist (e.g. sharing); returns what was done."""
