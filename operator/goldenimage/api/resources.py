"""The three custom resources as whole objects, and what their CRDs declare besides the schema
(names, printer columns, rules on the object's name)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from .base import Rule
from .goldenimage import GoldenImageSpec, GoldenImageStatus
from .group import GROUP
from .imagebuild import ImageBuildSpec, ImageBuildStatus
from .imagechannel import ImageChannelSpec, ImageChannelStatus
from .types import BUILD_NAME_MAX, IMAGE_NAME, IMAGE_NAME_MAX, IMAGE_NAME_MESSAGE


class ObjectMeta(BaseModel):
    """The parts of metadata the operator reads; the API server owns the rest."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True)

    name: str = ""
    namespace: str | None = None
    uid: str | None = None
    resource_version: str | None = None
    generation: int | None = None
    creation_timestamp: datetime | None = None
    deletion_timestamp: datetime | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    finalizers: list[str] = Field(default_factory=list)
    owner_references: list[dict[str, Any]] = Field(default_factory=list)


class CustomResource(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)

    api_version: Literal["goldenimage.io/v1alpha1"] = "goldenimage.io/v1alpha1"
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)

    definition: ClassVar[Definition]

    @model_validator(mode="after")
    def _check_object_rules(self) -> CustomResource:
        for rule in type(self).definition.rules:
            if rule.check is not None and not rule.check(self):
                raise ValueError(rule.message)
        return self

    def wire(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class GoldenImage(CustomResource):
    kind: Literal["GoldenImage"] = "GoldenImage"
    spec: GoldenImageSpec
    status: GoldenImageStatus | None = None


class ImageBuild(CustomResource):
    kind: Literal["ImageBuild"] = "ImageBuild"
    spec: ImageBuildSpec
    status: ImageBuildStatus | None = None


class ImageChannel(CustomResource):
    kind: Literal["ImageChannel"] = "ImageChannel"
    spec: ImageChannelSpec
    status: ImageChannelStatus | None = None


R = TypeVar("R", bound=CustomResource)


@dataclass(frozen=True)
class Column:
    name: str
    json_path: str
    type: str = "string"
    priority: int = 0
    description: str = ""

    def as_schema(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "type": self.type, "jsonPath": self.json_path}
        if self.description:
            out["description"] = self.description
        if self.priority:
            out["priority"] = self.priority
        return out


def _ready(part: str) -> str:
    return f'.status.conditions[?(@.type=="Ready")].{part}'


AGE = Column("Age", ".metadata.creationTimestamp", "date")


@dataclass(frozen=True)
class Definition:
    model: type[CustomResource]
    plural: str
    short_names: tuple[str, ...]
    description: str
    columns: tuple[Column, ...]
    # Rules on the whole object; CEL can read metadata.name here and nowhere else.
    rules: tuple[Rule, ...] = field(default=())

    @property
    def kind(self) -> str:
        return str(self.model.model_fields["kind"].default)

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def crd_name(self) -> str:
        return f"{self.plural}.{GROUP}"


def _name_rule(max_length: int) -> Rule:
    return Rule(
        f"self.metadata.name.size() <= {max_length}",
        f"metadata.name may be at most {max_length} characters: it becomes part of child object names",
        lambda obj: len(obj.metadata.name) <= max_length,
        field_path=".metadata.name",
    )


_image_name_rule = Rule(
    f"self.metadata.name.matches('{IMAGE_NAME}')",
    f"metadata.name {IMAGE_NAME_MESSAGE}: it becomes part of image names on every cloud",
    lambda obj: re.fullmatch(IMAGE_NAME, obj.metadata.name) is not None,
    field_path=".metadata.name",
)


GoldenImage.definition = Definition(
    model=GoldenImage,
    plural="goldenimages",
    short_names=("gi",),
    description="GoldenImage is the recipe of a machine image: sources, provisioners, targets on AWS, "
    "Azure and GCP, validation checks, and rebuild and retention policy.",
    columns=(
        Column("Latest", ".status.latestVersion", "integer", description="Newest version built"),
        Column("Validated", ".status.latestValidatedVersion", "integer", description="Newest validated version"),
        Column("Ready", _ready("status")),
        Column("Reason", _ready("reason")),
        AGE,
        Column("Message", _ready("message"), priority=1),
    ),
    rules=(_name_rule(IMAGE_NAME_MAX), _image_name_rule),
)

ImageBuild.definition = Definition(
    model=ImageBuild,
    plural="imagebuilds",
    short_names=("ib",),
    description="ImageBuild is one immutable version of a GoldenImage: the frozen recipe, the artifacts "
    "built per target and region, validation results and revocation.",
    columns=(
        Column("Image", ".spec.image"),
        Column("Version", ".spec.version", "integer"),
        Column("Status", _ready("reason"), description="Summary of the Ready condition"),
        Column("Revoked", ".spec.revoked.reason"),
        AGE,
        Column("Fingerprint", ".spec.fingerprint", priority=1),
    ),
    rules=(_name_rule(BUILD_NAME_MAX),),
)

ImageChannel.definition = Definition(
    model=ImageChannel,
    plural="imagechannels",
    short_names=("ich",),
    description="ImageChannel is a named pointer (such as web-prod) at one validated version of an image, "
    "moved by a promotion policy or a pin, with history and publication where consumers look.",
    columns=(
        Column("Image", ".spec.image"),
        Column("Version", ".status.current.version", "integer"),
        Column("Build", ".status.current.build"),
        Column("Promoted", ".status.current.promotedAt", "date"),
        Column("Ready", _ready("status")),
        AGE,
        Column("Reason", _ready("reason"), priority=1),
    ),
    rules=(
        _name_rule(63),
        Rule(
            "!has(self.spec.source) || !has(self.spec.source.channel) || "
            "self.spec.source.channel != self.metadata.name",
            "spec.source.channel cannot name the channel itself",
            lambda obj: obj.spec.source is None or obj.spec.source.channel != obj.metadata.name,
            field_path=".spec.source.channel",
        ),
    ),
)

RESOURCES: tuple[type[CustomResource], ...] = (GoldenImage, ImageBuild, ImageChannel)
