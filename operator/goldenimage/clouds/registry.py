"""Every cloud the operator knows, and what it can do with each (the pure part)."""

from __future__ import annotations

from ..api.goldenimage import Target
from ..api.types import CloudName
from .aws.kind import KIND as AWS
from .azure.kind import KIND as AZURE
from .base import CloudKind
from .gcp.kind import KIND as GCP

KINDS: dict[CloudName, CloudKind] = {"aws": AWS, "gcp": GCP, "azure": AZURE}


def kind(name: CloudName) -> CloudKind:
    return KINDS[name]


def of(target: Target) -> CloudKind:
    """The cloud of a target."""
    return KINDS[target.cloud]
