"""Label and annotation keys: the only place they are spelled."""

from __future__ import annotations

from ..api.resources import GROUP

MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGER = "goldenimage-operator"
IMAGE = f"{GROUP}/image"
BUILD = f"{GROUP}/build"
VERSION = f"{GROUP}/version"
TARGET = f"{GROUP}/target"
ATTEMPT = f"{GROUP}/attempt"
ROLE = f"{GROUP}/role"
REGION = f"{GROUP}/region"

# Annotations. REBUILD is the user's: a new value asks for one new version.
REBUILD = f"{GROUP}/rebuild"
# Set by the operator on an ImageBuild: the token that created it, and what to do with its
# artifacts when it is deleted (kept in step with the GoldenImage's retention policy).
REBUILD_TOKEN = f"{GROUP}/rebuild-token"
DELETION_POLICY = f"{GROUP}/deletion-policy"
# Set by a user on an ImageBuild stuck in deletion: skip the cloud clean-up.
SKIP_CLEANUP = f"{GROUP}/skip-cleanup"

FINALIZER = f"{GROUP}/finalizer"


def for_build(image: str, build: str, version: int) -> dict[str, str]:
    return {MANAGED_BY: MANAGER, IMAGE: image, BUILD: build, VERSION: str(version)}


def for_job(image: str, build: str, version: int, target: str, attempt: int, role: str) -> dict[str, str]:
    return {**for_build(image, build, version), TARGET: target, ATTEMPT: str(attempt), ROLE: role}


def selector(labels: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in labels.items())
