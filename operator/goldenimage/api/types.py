"""Bounded value types shared by the resources."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Literal

from pydantic import Field, PlainSerializer

from . import cron, durations
from .base import (
    ConfigKey,
    FieldRule,
    Format,
    Model,
    ObjectName,
    exactly_one_of,
    keys_at_most,
    no_template_map,
    no_template_text,
)

Duration = Annotated[str, Format(durations.PATTERN, durations.MESSAGE, max_length=32)]
# A timeout of nothing would fail every attempt at once.
PositiveDuration = Annotated[
    Duration, FieldRule("self.matches('[1-9]')", "must be longer than 0s", lambda v: re.search("[1-9]", v) is not None)
]
CronSchedule = Annotated[str, Format(cron.PATTERN, cron.MESSAGE, max_length=128, extra_check=cron.check)]

# A GoldenImage's name ends up in every cloud's resource names (GCP's are the strictest) and,
# as `<image>-<version>`, in the names of its ImageBuilds and their children.
IMAGE_NAME = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"

# Target names become part of Job names and labels, so they stay short DNS labels; they also
# name the Packer source (`source.<type>.<target>`), an HCL identifier, which cannot start with a digit.
TargetName = Annotated[
    str,
    Format(
        IMAGE_NAME,
        "must be a lowercase DNS label starting with a letter: letters, digits and '-', ending with a letter or digit",
        max_length=32,
    ),
]

IMAGE_NAME_MESSAGE = "must start with a letter and hold only lowercase letters, digits and '-'"
IMAGE_NAME_MAX = 40
BUILD_NAME_MAX = IMAGE_NAME_MAX + 8  # "-" and a version of up to 7 digits
ImageName = Annotated[str, Format(IMAGE_NAME, IMAGE_NAME_MESSAGE, max_length=IMAGE_NAME_MAX)]

AwsRegion = Annotated[
    str, Format(r"^[a-z]{2}(-[a-z]+)+-[0-9]{1,2}$", "must be an AWS region such as eu-west-1", max_length=32)
]
AwsAccountId = Annotated[str, Format(r"^[0-9]{12}$", "must be a 12-digit AWS account ID", max_length=12)]
AmiId = Annotated[
    str, Format(r"^ami-[0-9a-f]{8,17}$", "must be an AMI ID such as ami-0abc1234def567890", max_length=21)
]
GcpProject = Annotated[
    str,
    Format(
        r"^[a-z][-a-z0-9]{4,28}[a-z0-9]$",
        "must be a GCP project ID: 6 to 30 lowercase letters, digits or '-', starting with a letter",
        max_length=30,
    ),
]
GcpZone = Annotated[
    str, Format(r"^[a-z]+-[a-z]+[0-9]+-[a-z]$", "must be a GCP zone such as europe-west1-b", max_length=40)
]
GcpLocation = Annotated[
    str,
    Format(
        r"^[a-z]+(-[a-z]+[0-9]+)?$",
        "must be a GCP region such as europe-west1 or a multi-region such as eu",
        max_length=40,
    ),
]
GcpName = Annotated[
    str,
    Format(
        r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$",
        "must be a GCP resource name: lowercase letters, digits and '-', starting with a letter",
        max_length=63,
    ),
]
AzureLocation = Annotated[
    str, Format(r"^[a-z][a-z0-9]{1,39}$", "must be an Azure location such as westeurope", max_length=40)
]
Uuid = Annotated[
    str,
    Format(
        r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$",
        "must be a UUID such as 00000000-0000-0000-0000-000000000000",
        max_length=36,
    ),
]
AzureName = Annotated[
    str,
    Format(
        r"^[-\w._()]{1,80}$",
        "must be an Azure resource name: letters, digits, '-', '_', '.' and parentheses",
        max_length=80,
    ),
]
AbsolutePath = Annotated[str, Format(r"^/[^\x00]*$", "must be an absolute path", max_length=1024), no_template_text]

# The operator's own tags and labels (goldenimage.io/..., on GCP goldenimage-io_...) say which
# build, namespace and channel a resource belongs to: a tenant may not write them.
RESERVED_KEY = r"(?i)^goldenimage[^a-z0-9_/]io[/_]"
_RESERVED_MESSAGE = "keys beginning with goldenimage.io/ (or its GCP spelling goldenimage-io_) are the operator's"
not_reserved_key = FieldRule(
    f"!self.matches('{RESERVED_KEY}')", _RESERVED_MESSAGE, lambda v: re.search(RESERVED_KEY, v) is None
)
no_reserved_keys = FieldRule(
    f"self.all(k, !k.matches('{RESERVED_KEY}'))",
    _RESERVED_MESSAGE,
    lambda v: not any(re.search(RESERVED_KEY, k) for k in v),
)
# Cloud tags: AWS allows 50 per resource, keys up to 128 characters and values up to 256.
Tags = Annotated[
    dict[str, Annotated[str, Field(max_length=256)]],
    Field(max_length=40),
    keys_at_most(128),
    no_template_map,
    no_reserved_keys,
]
# Ansible extra vars: identifier keys. Values are checked one by one, which keeps the CEL cost
# estimate (provisioners x entries x length) within the API server's budget.
VariableName = Annotated[
    str,
    Format(
        r"^[A-Za-z_][A-Za-z0-9_]*$",
        "must be a variable name: letters, digits and '_', not starting with a digit",
        max_length=128,
    ),
]
PlainText = Annotated[str, Field(max_length=4096), no_template_text]
StringMap = Annotated[dict[VariableName, PlainText], Field(max_length=64)]
ShortText = Annotated[str, Field(min_length=1, max_length=256)]
# Free text that lands in a rendered Packer template, where `{{` would be Packer's own syntax:
# a short word (user names, machine sizes, resource IDs) and a longer reference (names, ARNs).
PackerWord = Annotated[str, Field(min_length=1, max_length=64), no_template_text]
PackerText = Annotated[str, Field(min_length=1, max_length=256), no_template_text]


def _clip(limit: int) -> Callable[[str], str]:
    """Free text the operator writes into a status is bounded by construction: a message built
    from many parts (or from a runner's words) must never make the status write fail."""

    def clip(text: str) -> str:
        return text if len(text) <= limit else text[: limit - 1] + "…"

    return clip


Message = Annotated[str, Field(max_length=4096), PlainSerializer(_clip(4096), return_type=str)]
CheckMessage = Annotated[str, Field(max_length=1024), PlainSerializer(_clip(1024), return_type=str)]
ConditionMessage = Annotated[str, Field(max_length=32768), PlainSerializer(_clip(32768), return_type=str)]

ReadyStatus = Literal["True", "False", "Unknown"]
CloudName = Literal["aws", "gcp", "azure"]


class ConfigMapKeyRef(Model):
    """A key of a ConfigMap in the object's namespace."""

    name: ObjectName = Field(description="Name of the ConfigMap, in the object's namespace.")
    key: ConfigKey = Field(description="Key of the ConfigMap's data that holds the text.")


class SecretKeyRef(Model):
    """A key of a Secret in the object's namespace."""

    name: ObjectName = Field(description="Name of the Secret, in the object's namespace.")
    key: ConfigKey = Field(description="Key of the Secret's data that holds the value.")


class SecretRef(Model):
    """A Secret in the object's namespace."""

    name: ObjectName = Field(description="Name of the Secret, in the object's namespace.")


class Content(Model):
    """File content, written inline or read from a ConfigMap key."""

    rules = (exactly_one_of("inline", "config_map_ref", message="set exactly one of inline or configMapRef"),)

    inline: Annotated[str, Field(min_length=1, max_length=65536)] | None = Field(
        None, description="The content itself, at most 65536 characters."
    )
    config_map_ref: ConfigMapKeyRef | None = Field(
        None,
        description="A ConfigMap key holding the content. Its text is part of the image's fingerprint: "
        "changing it builds a new version.",
    )


Version = Annotated[int, Field(ge=1, le=1_000_000)]
