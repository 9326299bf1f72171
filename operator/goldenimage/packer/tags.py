"""The tags (labels on GCP) that mark every cloud resource a build creates, spelled as each
cloud allows, so that leftovers can always be found by build id."""

from __future__ import annotations

import re
from collections.abc import Mapping

from ..api.resources import GROUP
from ..kube.labels import ATTEMPT, IMAGE, MANAGED_BY, MANAGER, ROLE, TARGET, VERSION

# The keys shared with the Kubernetes labels are spelled there; these two exist only in clouds.
BUILD_ID = f"{GROUP}/build-id"
NAMESPACE = f"{GROUP}/namespace"

__all__ = [
    "ATTEMPT",
    "BUILD_ID",
    "IMAGE",
    "MANAGED_BY",
    "MANAGER",
    "NAMESPACE",
    "ROLE",
    "TARGET",
    "VERSION",
    "for_cloud",
    "key_for",
    "label_key",
    "label_value",
]


def key_for(cloud: str, key: str) -> str:
    """A tag key as `cloud` accepts it: AWS as is; Azure without '/'; GCP as a label key."""
    if cloud == "aws":
        return key
    if cloud == "azure":
        return re.sub(r"[<>%&\\?/]", "_", key)
    return label_key(key)


def label_key(key: str) -> str:
    """GCP label keys: lowercase letters, digits, '_' and '-', starting with a letter, <= 63."""
    text = re.sub(r"[^a-z0-9_-]", "-", key.lower().replace("/", "_"))
    if not text or not text[0].isalpha():
        text = "t" + text
    return text[:63]


def label_value(value: str) -> str:
    return re.sub(r"[^a-z0-9_-]", "-", value.lower())[:63]


def for_cloud(cloud: str, tags: Mapping[str, str]) -> dict[str, str]:
    if cloud == "gcp":
        return {label_key(k): label_value(v) for k, v in tags.items()}
    return {key_for(cloud, k): v for k, v in tags.items()}
