"""ImageBuild: one immutable version of a GoldenImage — frozen recipe, fingerprint, per-target
artifacts per region, validation results and revocation."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field

from .base import Format, Model, ObjectName, Rule, immutable
from .conditions import ConditionList
from .goldenimage import GoldenImageSpec
from .types import CloudName, ImageName, Message, ShortText, TargetName, Version

Fingerprint = Annotated[
    str, Format(r"^sha256:[0-9a-f]{64}$", "must be sha256: followed by 64 hex digits", max_length=71)
]
BuildReason = Literal[
    "Initial", "SpecChanged", "RebuildRequested", "Scheduled", "MaxAge", "SourceChanged", "RunnerChanged"
]
ArtifactId = Annotated[str, Field(min_length=1, max_length=1024)]
Region = Annotated[str, Field(min_length=1, max_length=64)]


class Revocation(Model):
    reason: Annotated[str, Field(min_length=1, max_length=1024)]
    revoked_by: ShortText | None = None
    revoked_at: datetime | None = None


class ImageBuildSpec(Model):
    """Written once by the operator; only `revoked` may change afterwards."""

    rules = (
        Rule(
            "oldSelf.image == self.image && oldSelf.version == self.version && "
            "oldSelf.fingerprint == self.fingerprint && oldSelf.reason == self.reason",
            "spec is immutable except revoked",
        ),
        Rule(
            "has(oldSelf.sources) == has(self.sources) && (!has(self.sources) || oldSelf.sources == self.sources)",
            "spec.sources is immutable",
        ),
        Rule(
            "has(oldSelf.inputs) == has(self.inputs) && (!has(self.inputs) || oldSelf.inputs == self.inputs)",
            "spec.inputs is immutable",
        ),
        Rule(
            "!has(oldSelf.revoked) || has(self.revoked)",
            "a revocation cannot be withdrawn; build a new version instead",
        ),
    )

    image: ImageName = Field(description="The GoldenImage this build belongs to.")
    version: Version
    fingerprint: Fingerprint
    reason: BuildReason
    recipe: Annotated[
        GoldenImageSpec,
        Field(json_schema_extra={"x-kubernetes-validations": [immutable("spec.recipe is immutable").as_schema()]}),
    ]
    sources: Annotated[dict[str, ArtifactId], Field(max_length=16)] = Field(
        default_factory=dict, description="Source image resolved per target when the build was created."
    )
    inputs: Annotated[dict[str, Fingerprint], Field(max_length=130)] = Field(
        default_factory=dict,
        description="Digest of every file the build reads from a ConfigMap (playbooks, scripts, templates), by "
        "ConfigMap and key; the build refuses to start if one changed before it was copied.",
    )
    revoked: Revocation | None = Field(None, description="Set to withdraw this build from every channel.")


class Artifact(Model):
    region: Region
    id: ArtifactId
    state: Annotated[str, Field(max_length=64)] | None = Field(
        None, description="The cloud's word on the artifact in this region, e.g. an Azure replication state."
    )


class TargetStatus(Model):
    name: TargetName
    cloud: CloudName
    phase: Literal["Pending", "Building", "Succeeded", "Failed"]
    attempt: Annotated[int, Field(ge=1, le=100)] = 1
    job_name: ObjectName | None = None
    artifacts: Annotated[list[Artifact], Field(max_length=64)] = Field(default_factory=list)
    started_at: datetime | None = None
    finished_at: datetime | None = None
    next_attempt_at: datetime | None = None
    packer_version: Annotated[str, Field(max_length=64)] | None = None
    error_class: Literal["Permanent", "Retryable"] | None = None
    message: Message = ""


class CheckResult(Model):
    name: Annotated[str, Field(min_length=1, max_length=63)]
    passed: bool
    message: Annotated[str, Field(max_length=1024)] = ""


class ValidationResult(Model):
    target: TargetName
    region: Region
    artifact: ArtifactId
    phase: Literal["Pending", "Running", "Passed", "Failed"]
    job_name: ObjectName | None = None
    checks: Annotated[list[CheckResult], Field(max_length=32)] = Field(default_factory=list)
    started_at: datetime | None = None
    finished_at: datetime | None = None
    message: Message = ""


class MissingArtifact(Model):
    target: TargetName
    region: Region
    id: ArtifactId


class ImageBuildStatus(Model):
    observed_generation: Annotated[int, Field(ge=0)] | None = None
    targets: Annotated[list[TargetStatus], Field(max_length=16)] = Field(default_factory=list)
    validation: Annotated[list[ValidationResult], Field(max_length=128)] = Field(default_factory=list)
    missing_artifacts: Annotated[list[MissingArtifact], Field(max_length=128)] = Field(
        default_factory=list,
        description="Artifacts found gone from their cloud: no channel points at this build any more.",
    )
    conditions: ConditionList = Field(default_factory=list)
