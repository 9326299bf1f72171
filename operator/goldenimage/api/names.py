"""Deterministic names of everything the operator creates: running twice creates nothing twice,
and "already exists" means the object is ours to adopt."""

from __future__ import annotations

import hashlib

LABEL_MAX = 63  # Job names become label values, which Kubernetes limits to 63 characters


def fit(name: str, limit: int = LABEL_MAX) -> str:
    """`name` itself when short enough, else a prefix plus a hash of the whole (still unique)."""
    if len(name) <= limit:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[: limit - 9].rstrip('-.')}-{digest}"


def build(image: str, version: int) -> str:
    """The ImageBuild of one version: `<image>-<version>`."""
    return f"{image}-{version}"


def build_id(build_name: str, uid: str) -> str:
    """The value of the goldenimage.io/build-id tag: readable, and unique across clusters and
    namespaces through the ImageBuild's UID."""
    return f"{build_name}-{uid.replace('-', '')[:8]}"


def build_job(build_name: str, target: str, attempt: int) -> str:
    """`<build>-<target>-<attempt>-<hash>`: readable, and unique through the hash of what the Job is."""
    return _job(f"{build_name}-{target}-{attempt}", "build", build_name, target, "", attempt)


def inputs(build_name: str) -> str:
    """The ConfigMap holding a build's rendered templates and input files."""
    return f"{build_name}-inputs"


def validation_job(build_name: str, target: str, region: str, attempt: int) -> str:
    """`<build>-<target>-v-<region>-<attempt>-<hash>`, unique like build_job's."""
    return _job(f"{build_name}-{target}-v-{region}-{attempt}", "validation", build_name, target, region, attempt)


def _job(readable: str, *identity: str | int) -> str:
    # The readable part alone is ambiguous: target "eu-v-eu-west-1" builds under the name that
    # target "eu" validates in eu-west-1 under, and image "web-1" version 2 under the names of
    # image "web" version 1's target "2-...". The hash of the fields themselves tells them apart.
    digest = hashlib.sha256("\n".join(map(str, identity)).encode()).hexdigest()[:8]
    return f"{readable[: LABEL_MAX - 9].rstrip('-.')}-{digest}"
