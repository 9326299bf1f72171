"""ImageBuild: one immutable version of a GoldenImage — frozen recipe, fingerprint, per-target
artifacts per region, validation results and revocation."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field

from .base import Format, Model, ObjectName, Rule, immutable
from .conditions import ConditionList
from .goldenimage import MAX_ARTIFACTS, GoldenImageSpec
from .types import CheckMessage, CloudName, ImageName, Message, ShortText, TargetName, Version

Fingerprint = Annotated[
    str, Format(r"^sha256:[0-9a-f]{64}$", "must be sha256: followed by 64 hex digits", max_length=71)
]
BuildReason = Literal[
    "Initial", "SpecChanged", "RebuildRequested", "Scheduled", "MaxAge", "SourceChanged", "RunnerChanged"
]
ArtifactId = Annotated[str, Field(min_length=1, max_length=1024)]
Region = Annotated[str, Field(min_length=1, max_length=64)]


class Revocation(Model):
    """A build withdrawn for good: no channel points at it any more, and its artifacts are marked
    deprecated in the clouds."""

    reason: Annotated[str, Field(min_length=1, max_length=1024)] = Field(
        description="Why, e.g. a CVE; recorded on the artifacts in the clouds too."
    )
    revoked_by: ShortText | None = Field(
        None,
        description="Who revoked it: the kubeconfig user of `kubectl golden revoke`, or goldenimage/<image> for a "
        "version its GoldenImage lists in spec.revocations.",
    )
    revoked_at: datetime | None = Field(None, description="When it was revoked.")


def revocation_patch(
    reason: str, revoked_by: str, revoked_at: datetime, *, resource_version: str | None = None
) -> dict[str, Any]:
    """The merge patch that revokes an ImageBuild, as `kubectl golden revoke` and the operator
    (for revocations declared on the image) send it. With `resource_version` it is conditional,
    so that it never overwrites a revocation made in between."""
    revocation = Revocation(reason=reason, revoked_by=revoked_by, revoked_at=revoked_at.replace(microsecond=0))
    patch: dict[str, Any] = {"spec": {"revoked": revocation.wire()}}
    if resource_version is not None:
        patch["metadata"] = {"resourceVersion": resource_version}
    return patch


class ImageBuildSpec(Model):
    """One version of the image as it was decided: written once by the operator; only `revoked` may
    change afterwards."""

    rules = (
        Rule(
            "oldSelf.image == self.image && oldSelf.version == self.version && "
            "oldSelf.fingerprint == self.fingerprint && oldSelf.reason == self.reason",
            "spec is immutable except revoked",
        ),
        Rule(
            "has(oldSelf.sources) == has(self.sources) && (!has(self.sources) || oldSelf.sources == self.sources)",
            "spec.sources is immutable",
            field_path=".sources",
        ),
        Rule(
            "has(oldSelf.inputs) == has(self.inputs) && (!has(self.inputs) || oldSelf.inputs == self.inputs)",
            "spec.inputs is immutable",
            field_path=".inputs",
        ),
        Rule(
            "!has(oldSelf.revoked) || has(self.revoked)",
            "a revocation cannot be withdrawn; build a new version instead",
            field_path=".revoked",
        ),
    )

    image: ImageName = Field(description="The GoldenImage this build belongs to.")
    version: Version = Field(
        description="Version number, counting up from 1 per image; the build is <image>-<version>."
    )
    fingerprint: Fingerprint = Field(
        description="sha256 of what shaped this version: the recipe's image-shaping fields, the ConfigMap keys it "
        "reads, the resolved sources and the runner image."
    )
    reason: BuildReason = Field(description="Why this version was created.")
    recipe: Annotated[
        GoldenImageSpec,
        Field(
            description="The GoldenImage's spec when this version was created, without its revocations: the build "
            "and validation read only this copy.",
            json_schema_extra={"x-kubernetes-validations": [immutable("spec.recipe is immutable").as_schema()]},
        ),
    ]
    sources: Annotated[dict[str, ArtifactId], Field(max_length=16)] = Field(
        default_factory=dict, description="Source image resolved per target when the build was created."
    )
    inputs: Annotated[dict[str, Fingerprint], Field(max_length=130)] = Field(
        default_factory=dict,
        description="Digest of every file the build reads from a ConfigMap (playbooks, scripts, templates), by "
        "ConfigMap and key; the build refuses to start if one changed before it was copied.",
    )
    revoked: Revocation | None = Field(
        None, description="Set to withdraw this build from every channel; it cannot be removed once set."
    )


class Artifact(Model):
    """One image a target built, in one region."""

    region: Region = Field(description="Region the image is in: an AWS region, GCP storage location or Azure location.")
    id: ArtifactId = Field(
        description="The cloud's ID of the image: an AMI ID, a GCP image path (projects/<project>/global/images/"
        "<name>) or an Azure gallery image version ID."
    )
    state: Annotated[str, Field(max_length=64)] | None = Field(
        None, description="The cloud's word on the artifact in this region, e.g. an Azure replication state."
    )


class TargetStatus(Model):
    """How the build of one target went."""

    name: TargetName = Field(description="Name of the target.")
    cloud: CloudName = Field(description="Cloud of the target.")
    phase: Literal["Pending", "Building", "Succeeded", "Failed"] = Field(
        description="Pending until an attempt starts (or while a retry waits), Building while its Job runs, "
        "Succeeded once its artifacts are recorded, Failed when no attempt is left or the failure is permanent."
    )
    attempt: Annotated[int, Field(ge=1, le=100)] = Field(
        1, description="Current attempt, counting up to spec.recipe.build.maxAttempts."
    )
    job_name: ObjectName | None = Field(None, description="Name of the current attempt's build Job.")
    artifacts: Annotated[list[Artifact], Field(max_length=64)] = Field(
        default_factory=list, description="Images the target built, one per region."
    )
    started_at: datetime | None = Field(None, description="When the current attempt started.")
    finished_at: datetime | None = Field(None, description="When the target succeeded or failed for good.")
    next_attempt_at: datetime | None = Field(
        None, description="When the next attempt starts, after a failure that may be retried."
    )
    packer_version: Annotated[str, Field(max_length=64)] | None = Field(
        None, description="Version of Packer that built the artifacts."
    )
    error_class: Literal["Permanent", "Retryable"] | None = Field(
        None,
        description="Of the last failure: Retryable when another attempt may succeed, Permanent when it would not.",
    )
    message: Message = Field("", description="What happened last, e.g. the build time or why an attempt failed.")


class CheckResult(Model):
    """The outcome of one check."""

    name: Annotated[str, Field(min_length=1, max_length=63)] = Field(description="Name of the check.")
    passed: bool = Field(description="Whether the check passed.")
    message: CheckMessage = Field(
        "", description="What the check found, e.g. the HTTP status or the command's exit code and output."
    )


class ValidationResult(Model):
    """The validation of one artifact: an instance booted from it and checked."""

    target: TargetName = Field(description="Target that built the artifact.")
    region: Region = Field(description="Region of the artifact, where the instance runs.")
    artifact: ArtifactId = Field(description="ID of the artifact the instance boots from.")
    phase: Literal["Pending", "Running", "Passed", "Failed"] = Field(
        description="Pending until its Job starts, Running while it runs, then Passed or Failed."
    )
    job_name: ObjectName | None = Field(None, description="Name of the validation Job.")
    checks: Annotated[list[CheckResult], Field(max_length=32)] = Field(
        default_factory=list, description="The outcome of every check, in the order they ran."
    )
    started_at: datetime | None = Field(None, description="When the validation Job started.")
    finished_at: datetime | None = Field(None, description="When the validation passed or failed.")
    message: Message = Field("", description="A summary, or why the validation failed.")


class MissingArtifact(Model):
    """A recorded artifact found gone from its cloud."""

    target: TargetName = Field(description="Target that built the artifact.")
    region: Region = Field(description="Region the artifact was in.")
    id: ArtifactId = Field(description="The cloud's ID of the artifact.")


class ImageBuildStatus(Model):
    """The build, its validation and its artifacts as the operator last saw them."""

    observed_generation: Annotated[int, Field(ge=0)] | None = Field(
        None, description="The metadata.generation the operator last acted on."
    )
    targets: Annotated[list[TargetStatus], Field(max_length=16)] = Field(
        default_factory=list, description="The build of each target."
    )
    validation: Annotated[list[ValidationResult], Field(max_length=MAX_ARTIFACTS)] = Field(
        default_factory=list,
        description="The validation of each artifact (target and region), started as soon as its target is built.",
    )
    missing_artifacts: Annotated[list[MissingArtifact], Field(max_length=MAX_ARTIFACTS)] = Field(
        default_factory=list,
        description="Artifacts found gone from their cloud: no channel points at this build any more.",
    )
    conditions: ConditionList = Field(
        default_factory=list,
        description="Built: every target built. Validated: every artifact passed validation. Available: every "
        "recorded artifact still exists. Deprecated: set once revoked. Ready: built, validated, available and not "
        "revoked.",
    )
