"""ImageChannel: a named pointer at one version of an image, with a promotion policy,
publication targets and history."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field

from .base import Format, Model, ObjectName, Rule, exactly_one_of
from .conditions import ConditionList
from .imagebuild import ArtifactId, Fingerprint, Region
from .types import CloudName, Duration, GcpName, ImageName, Message, TargetName, Version, not_reserved_key


class LatestValidated(Model):
    """Follow the newest validated, unrevoked build of the image."""


class ChannelSource(Model):
    rules = (exactly_one_of("latest_validated", "channel", message="set exactly one of latestValidated or channel"),)

    latest_validated: LatestValidated | None = None
    channel: ObjectName | None = Field(None, description="Promote what this upstream channel points at.")
    min_soak: Duration | None = Field(
        None,
        description="How long a version must have been validated (latestValidated) or current upstream "
        "(channel) before this channel takes it.",
    )


SsmParameter = Annotated[
    str,
    Format(
        r"^/[a-zA-Z0-9_.\-/]*[a-zA-Z0-9_.\-]$",
        "must be an SSM parameter path such as /golden/web/prod",
        max_length=1011,
    ),
]
LabelValue = Annotated[
    str,
    Format(
        r"^[a-z0-9_-]{0,63}$",
        "must be a GCP label value: lowercase letters, digits, '_' and '-'",
        max_length=63,
    ),
]
LabelKey = Annotated[
    str,
    Format(
        r"^[a-z][a-z0-9_-]{0,62}$",
        "must be a GCP label key: lowercase letters, digits, '_' and '-'",
        max_length=63,
    ),
    not_reserved_key,
]


class Tag(Model):
    key: Annotated[str, Field(min_length=1, max_length=128), not_reserved_key]
    value: Annotated[str, Field(max_length=256)]


class Label(Model):
    key: LabelKey
    value: LabelValue


class AwsPublish(Model):
    ssm_parameter: SsmParameter | None = Field(
        None, description="Parameter (data type aws:ec2:image) written in every region the image is in."
    )
    tag: Tag | None = Field(None, description="Tag carried by exactly one AMI per region: the current one.")


class GcpPublish(Model):
    label: Label | None = Field(None, description="Label carried by exactly one image per GCP target: the current one.")
    family: GcpName | None = Field(
        None,
        description="Image family this channel owns: its newest non-deprecated image is always the channel's "
        "current one (a copy of it, in the target's project), so consumers can launch from the family.",
    )


class AzurePublish(Model):
    tag: Tag | None = Field(None, description="Tag carried by exactly one gallery image version per target.")
    gallery_latest: bool = Field(
        False,
        description="The gallery image definition's latest version is this channel's current one: every other "
        "version is excluded from latest. One channel per image should set it.",
    )


class ConfigMapPublish(Model):
    name: ObjectName


class Publish(Model):
    aws: AwsPublish | None = None
    gcp: GcpPublish | None = None
    azure: AzurePublish | None = None
    config_map: ConfigMapPublish | None = None


class ImageChannelSpec(Model):
    rules = (
        Rule(
            "has(self.source) || has(self.version)",
            "set source (a promotion policy), version (a pin), or both",
            lambda m: m.source is not None or m.version is not None,
        ),
        Rule(
            "!has(self.version) || self.version >= 1",
            "spec.version must be 1 or more",
            lambda m: m.version is None or m.version >= 1,
        ),
    )

    image: ImageName = Field(description="The GoldenImage whose builds this channel points at.")
    source: ChannelSource | None = Field(
        None, description="Promotion policy; only spec.version moves the channel when unset."
    )
    version: Version | None = Field(
        None,
        description="Pin: point at exactly this version (GitOps promotion and rollback); overrides source.",
    )
    publish: Publish | None = None
    history_limit: Annotated[int, Field(ge=1, le=100)] = 10
    suspend: bool = Field(False, description="Stop moving the pointer; publication of the current entry continues.")


class ChannelArtifact(Model):
    target: TargetName
    cloud: CloudName
    region: Region
    id: ArtifactId


# Why the channel moved to an entry: its policy (LatestValidated, UpstreamChannel), a pin
# (Pinned, or Rollback when the pin is older than what it replaced), or a fallback because the
# entry it replaced became unusable (Revoked, ArtifactsMissing, NotValidated).
PromotionReason = Literal[
    "LatestValidated",
    "UpstreamChannel",
    "Pinned",
    "Rollback",
    "Revoked",
    "ArtifactsMissing",
    "NotValidated",
    "BuildMissing",
]


class ChannelEntry(Model):
    version: Version
    build: ObjectName
    fingerprint: Fingerprint | None = None
    artifacts: Annotated[list[ChannelArtifact], Field(max_length=128)] = Field(default_factory=list)
    promoted_at: datetime
    reason: PromotionReason
    message: Message = ""


class ImageChannelStatus(Model):
    observed_generation: Annotated[int, Field(ge=0)] | None = None
    current: ChannelEntry | None = None
    history: Annotated[list[ChannelEntry], Field(max_length=100)] = Field(default_factory=list)
    conditions: ConditionList = Field(default_factory=list)
