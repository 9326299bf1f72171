"""ImageChannel: a named pointer at one version of an image, with a promotion policy,
publication targets and history."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field

from .base import Format, Model, ObjectName, Rule, exactly_one_of
from .conditions import ConditionList
from .goldenimage import MAX_ARTIFACTS
from .imagebuild import ArtifactId, Fingerprint, Region
from .types import CloudName, Duration, GcpName, ImageName, Message, TargetName, Version, not_reserved_key


class LatestValidated(Model):
    """Follow the newest validated, unrevoked version of the image; the channel only moves forward."""


class ChannelSource(Model):
    """How the channel moves by itself: exactly one of latestValidated or channel."""

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
    """A tag, as a key and its value."""

    key: Annotated[str, Field(min_length=1, max_length=128), not_reserved_key] = Field(
        description="Tag key; keys beginning with goldenimage.io/, in any letter case, are the operator's."
    )
    value: Annotated[str, Field(max_length=256)] = Field(description="Tag value.")


class Label(Model):
    """A GCP label, as a key and its value."""

    key: LabelKey = Field(description="Label key; keys beginning with goldenimage-io_ are the operator's.")
    value: LabelValue = Field(description="Label value.")


class AwsPublish(Model):
    """Publication on AWS, in every region the current version has an AMI in."""

    ssm_parameter: SsmParameter | None = Field(
        None,
        description="Parameter (data type aws:ec2:image) written in every region the image is in; with several AWS "
        "targets, one parameter per target beneath it (<parameter>/<target>).",
    )
    tag: Tag | None = Field(None, description="Tag carried by exactly one AMI per region: the current one.")


class GcpPublish(Model):
    """Publication on GCP."""

    label: Label | None = Field(None, description="Label carried by exactly one image per GCP target: the current one.")
    family: GcpName | None = Field(
        None,
        description="Image family this channel owns: its newest non-deprecated image is always the channel's "
        "current one (a copy of it, in the target's project), so consumers can launch from the family.",
    )


class AzurePublish(Model):
    """Publication on Azure."""

    tag: Tag | None = Field(None, description="Tag carried by exactly one gallery image version per target.")
    gallery_latest: bool = Field(
        False,
        description="The gallery image definition's latest version is this channel's current one: every other "
        "version is excluded from latest. One channel per image should set it.",
    )


class ConfigMapPublish(Model):
    """A ConfigMap owned by the channel, for consumers in the cluster: version, build, promotedAt,
    artifacts.json and one key per target and region (<target>.<region>)."""

    name: ObjectName = Field(description="Name of the ConfigMap, in the channel's namespace.")


class Publish(Model):
    """Where the current version is written for consumers: after every move, and again from time to
    time to undo drift."""

    aws: AwsPublish | None = None
    gcp: GcpPublish | None = None
    azure: AzurePublish | None = None
    config_map: ConfigMapPublish | None = None


class ImageChannelSpec(Model):
    """The image the channel points into, how it moves, and where it publishes."""

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
            field_path=".version",
        ),
        # Entries name builds of this image; another image's builds would be neither protected
        # by its retention nor comparable by version, so a channel keeps its image for life.
        Rule(
            "oldSelf.image == self.image",
            "spec.image is immutable: create another channel for another image",
            field_path=".image",
        ),
    )

    image: ImageName = Field(description="The GoldenImage whose builds this channel points at (immutable).")
    source: ChannelSource | None = Field(
        None, description="Promotion policy; only spec.version moves the channel when unset."
    )
    version: Version | None = Field(
        None,
        description="Pin: point at exactly this version (GitOps promotion and rollback); overrides source.",
    )
    publish: Publish | None = Field(
        None,
        description="Where the current version is written for consumers: after every move, and again from time to "
        "time to undo drift. Nothing is published when unset.",
    )
    history_limit: Annotated[int, Field(ge=1, le=100)] = Field(
        10, description="How many earlier entries status.history keeps."
    )
    suspend: bool = Field(
        False,
        description="Stop spec.source from moving the pointer; a pin and the fallback from an unusable version "
        "still apply, and publication continues.",
    )


class ChannelArtifact(Model):
    """One artifact of the version pointed at."""

    target: TargetName = Field(description="Target that built it.")
    cloud: CloudName = Field(description="Cloud it is on.")
    region: Region = Field(description="Region it is in.")
    id: ArtifactId = Field(description="The cloud's ID of the image, e.g. an AMI ID.")


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
    """A version the channel points at, or pointed at."""

    version: Version = Field(description="The version.")
    build: ObjectName = Field(description="Its ImageBuild.")
    fingerprint: Fingerprint | None = Field(
        None, description="The build's fingerprint: an ImageBuild recreated under the same name is not this one."
    )
    artifacts: Annotated[list[ChannelArtifact], Field(max_length=MAX_ARTIFACTS)] = Field(
        default_factory=list, description="The build's artifacts, per target and region."
    )
    promoted_at: datetime = Field(description="When the channel moved to it.")
    reason: PromotionReason = Field(
        description="Why the channel moved to it: LatestValidated or UpstreamChannel by its source, Pinned or "
        "Rollback by spec.version; Revoked, ArtifactsMissing, NotValidated or BuildMissing when it fell back "
        "because the entry before became unusable."
    )
    message: Message = Field("", description="Details of the move.")


class ImageChannelStatus(Model):
    """Where the channel points, and where it pointed before."""

    observed_generation: Annotated[int, Field(ge=0)] | None = Field(
        None, description="The metadata.generation the operator last acted on."
    )
    current: ChannelEntry | None = Field(
        None, description="The version the channel points at; unset while it points nowhere."
    )
    history: Annotated[list[ChannelEntry], Field(max_length=100)] = Field(
        default_factory=list, description="The entries it pointed at before, newest first, at most spec.historyLimit."
    )
    conditions: ConditionList = Field(
        default_factory=list,
        description="Ready: whether the channel points at a usable version, or why not. Published: whether the "
        "last writes to spec.publish succeeded; absent while there is nothing to publish.",
    )
