"""What a plan asks the executor to do. Every action is idempotent: names are deterministic and
"already exists" or "not found" count as done. Actions run in the order planned; those marked
`after_status` run once the status the plan wrote is recorded (they act on what it says)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import ClassVar, Literal

from pydantic import BaseModel

from ..api.goldenimage import CloudCredentials
from ..api.imagebuild import ImageBuildSpec
from ..api.types import CloudName
from ..clouds.base import Pointer


@dataclass(frozen=True)
class Action:
    after_status: ClassVar[bool] = False


@dataclass(frozen=True)
class Emit(Action):
    """A Kubernetes Event on the reconciled object (sent last, after everything else).

    `announces` is the action the Event reports, when it reports one rather than what the status
    says: once that action is carried out the Event is sent even if a later step of the plan
    fails, because the next plan observes the action's effect and has nothing left to say."""

    type: Literal["Normal", "Warning"]
    reason: str
    message: str
    announces: Action | None = field(default=None, compare=False, repr=False)


# -- GoldenImage -------------------------------------------------------------------------------


@dataclass(frozen=True)
class CreateBuild(Action):
    name: str
    spec: ImageBuildSpec
    annotations: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class DeleteBuild(Action):
    """Retire a version beyond the retention policy (its finalizer applies the deletion policy)."""

    name: str


@dataclass(frozen=True)
class AnnotateBuild(Action):
    name: str
    annotations: Mapping[str, str]


@dataclass(frozen=True)
class RevokeBuild(Action):
    """Revoke a version the image declares revoked, with the patch `kubectl golden revoke` sends;
    conditional on the build's resourceVersion, so that a revocation made meanwhile stays as made."""

    name: str
    reason: str
    revoked_by: str
    revoked_at: datetime
    resource_version: str | None = None


# -- ImageBuild --------------------------------------------------------------------------------


@dataclass(frozen=True)
class CreateInputs(Action):
    """Create the build's inputs ConfigMap (rendered templates and input files)."""

    data: Mapping[str, str]


@dataclass(frozen=True)
class CreateJob(Action):
    target: str
    attempt: int


@dataclass(frozen=True)
class CreateValidationJob(Action):
    target: str
    region: str
    artifact: str
    attempt: int = 1


@dataclass(frozen=True)
class DeleteJob(Action):
    name: str


@dataclass(frozen=True)
class ReleasePods(Action):
    """Remove the operator's result finalizer from these Pods of the build: the status now records
    what they reported, or nothing they could report is wanted any more. After the status, so
    that a result is never let go before it is recorded."""

    after_status: ClassVar[bool] = True
    pods: tuple[str, ...]


@dataclass(frozen=True)
class SweepAttempt(Action):
    """Delete what a failed attempt left in the cloud (Packer cleans up after SIGTERM, not after
    SIGKILL or an evicted node)."""

    target: str
    attempt: int


@dataclass(frozen=True)
class DeprecateArtifacts(Action):
    """Mark a revoked build's artifacts deprecated in their clouds (before the status says so)."""

    artifacts: tuple[tuple[str, str, str], ...]  # (target, region, id)
    reason: str


# -- ImageBuild deletion -----------------------------------------------------------------------


@dataclass(frozen=True)
class SweepBuild(Action):
    """Delete every temporary resource of the build in one target's regions."""

    target: str


@dataclass(frozen=True)
class DeleteArtifacts(Action):
    """Delete the target's artifacts: those recorded and any other carrying the build id."""

    target: str
    recorded: tuple[tuple[str, str], ...]  # (region, id)


@dataclass(frozen=True)
class ReleaseBuildPods(ReleasePods):
    """Release every Pod of a build being deleted, before its own finalizer goes: once the build
    is gone, nothing would release them."""

    after_status: ClassVar[bool] = False


@dataclass(frozen=True)
class RemoveFinalizer(Action):
    """The clean-up is done: let the object go."""


# -- ImageChannel ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Publish(Action):
    """Make one cloud's pointers say `current` (removing what only `previous` had)."""

    after_status: ClassVar[bool] = True
    cloud: CloudName
    section: BaseModel
    current: tuple[Pointer, ...]
    previous: tuple[Pointer, ...]
    key: str  # what is being published, as the publication ledger records it
    # The cloud identity: that of the build pointed at (or of the image's newest build).
    credentials: CloudCredentials | None = None


@dataclass(frozen=True)
class PublishConfigMap(Action):
    """Write the channel's ConfigMap for in-cluster consumers."""

    after_status: ClassVar[bool] = True
    name: str
    data: Mapping[str, str]
    key: str


@dataclass(frozen=True)
class AddFinalizer(Action):
    """The object needs the operator's finalizer, so that its deletion waits for the clean-up."""
