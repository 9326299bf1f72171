"""Label, annotation and tag keys, and the finalizer: the only place they are spelled.

The same keys mark Kubernetes objects (labels) and cloud resources (tags; each cloud spells them
as it allows, see clouds/<cloud>/)."""

from __future__ import annotations

from collections.abc import Mapping

from .group import GROUP

MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGER = "goldenimage-operator"
IMAGE = f"{GROUP}/image"
BUILD = f"{GROUP}/build"
VERSION = f"{GROUP}/version"
TARGET = f"{GROUP}/target"
ATTEMPT = f"{GROUP}/attempt"
ROLE = f"{GROUP}/role"
REGION = f"{GROUP}/region"
# On build and validation Pods: the UID of the ImageBuild they work for, which proves whose Pod it
# is once its Job is gone (a name may be taken again by a later build).
BUILD_UID = f"{GROUP}/build-uid"

# Tag keys that exist only in clouds.
BUILD_ID = f"{GROUP}/build-id"
NAMESPACE = f"{GROUP}/namespace"
REVOKED = f"{GROUP}/revoked"
# Which channel owns what publication created (an SSM parameter, a GCP family copy): its
# namespace is NAMESPACE; the UID tells a channel from a later one of the same name.
CHANNEL = f"{GROUP}/channel"
CHANNEL_UID = f"{GROUP}/channel-uid"

# Roles of the operator's Jobs and cloud resources.
ROLE_BUILD = "build"
ROLE_VALIDATION = "validation"

# Annotations. REBUILD is the user's: a new value asks for one new version.
REBUILD = f"{GROUP}/rebuild"
# Set by the operator on an ImageBuild: the token that created it, and what to do with its
# artifacts when it is deleted (kept in step with the GoldenImage's retention policy).
REBUILD_TOKEN = f"{GROUP}/rebuild-token"
DELETION_POLICY = f"{GROUP}/deletion-policy"
# Set by a user on an ImageBuild stuck in deletion: skip the cloud clean-up.
SKIP_CLEANUP = f"{GROUP}/skip-cleanup"
# Prefix of kopf's own annotations (progress, diff base).
KOPF_PREFIX = GROUP

FINALIZER = f"{GROUP}/finalizer"
# On build and validation Pods: keeps a finished Pod, and the result in its termination message,
# until the build's status records it (a Job's TTL or a deleted Job would otherwise take it).
RESULT_FINALIZER = f"{GROUP}/result"
# kopf's own (never needed: no kopf handler runs on deletion), kept apart from the operator's.
KOPF_FINALIZER = f"{GROUP}/kopf-finalizer"

# A credentials Secret reaches the runner's environment under this prefix: the runner knows every
# key of it, whatever the Secret holds, takes the prefix off for the tools, and masks each value.
SECRET_ENV_PREFIX = "GOLDENIMAGE_SECRET_"


def for_build(image: str, build: str, version: int) -> dict[str, str]:
    return {MANAGED_BY: MANAGER, IMAGE: image, BUILD: build, VERSION: str(version)}


def for_job(image: str, build: str, version: int, target: str, attempt: int, role: str) -> dict[str, str]:
    return {**for_build(image, build, version), TARGET: target, ATTEMPT: str(attempt), ROLE: role}


def selector(labels: Mapping[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in labels.items())
