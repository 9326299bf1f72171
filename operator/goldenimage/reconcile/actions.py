"""What a plan asks the handlers to do. Every action is idempotent: names are deterministic and
"already exists" or "not found" count as done."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from ..api.imagebuild import ImageBuildSpec


@dataclass(frozen=True)
class Emit:
    """A Kubernetes Event on the reconciled object."""

    type: Literal["Normal", "Warning"]
    reason: str
    message: str


@dataclass(frozen=True)
class CreateInputs:
    """Create the build's inputs ConfigMap (rendered templates and input files)."""

    data: Mapping[str, str]


@dataclass(frozen=True)
class CreateJob:
    target: str
    attempt: int


@dataclass(frozen=True)
class CreateValidationJob:
    target: str
    region: str
    artifact: str
    attempt: int = 1


@dataclass(frozen=True)
class DeleteJob:
    name: str


@dataclass(frozen=True)
class SweepAttempt:
    """Delete what a failed attempt left in the cloud (Packer cleans up after SIGTERM, not after
    SIGKILL or an evicted node)."""

    target: str
    attempt: int


@dataclass(frozen=True)
class DeprecateArtifacts:
    """Mark a revoked build's artifacts deprecated in their clouds."""

    artifacts: tuple[tuple[str, str, str], ...]  # (target, region, id)
    reason: str


@dataclass(frozen=True)
class CreateBuild:
    name: str
    spec: ImageBuildSpec
    annotations: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class DeleteBuild:
    """Retire a version beyond the retention policy (its finalizer applies the deletion policy)."""

    name: str


@dataclass(frozen=True)
class AnnotateBuild:
    name: str
    annotations: Mapping[str, str]


Action = (
    Emit
    | CreateInputs
    | CreateJob
    | CreateValidationJob
    | DeleteJob
    | SweepAttempt
    | DeprecateArtifacts
    | CreateBuild
    | DeleteBuild
    | AnnotateBuild
)
