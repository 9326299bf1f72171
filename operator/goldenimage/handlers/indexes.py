"""kopf indexes of what the operator reads besides the object it reconciles: kopf keeps them in
step with its watches and starts no handler before their first listing is in."""

from __future__ import annotations

from typing import Any

import kopf

from ..api import labels as labels_
from ..api.group import GROUP, VERSION
from ..reconcile import revocations

OURS: dict[str, Any] = {labels_.MANAGED_BY: labels_.MANAGER, labels_.BUILD: kopf.PRESENT}


@kopf.index(GROUP, VERSION, "imagebuilds")
def builds_by_image(namespace: str | None, body: kopf.Body, **_: Any) -> dict[Any, Any]:
    image = (body.get("spec") or {}).get("image")
    return {(namespace, image): dict(body)} if namespace and image else {}


@kopf.index(GROUP, VERSION, "goldenimages")
def images_by_name(namespace: str | None, body: kopf.Body, **_: Any) -> dict[Any, Any]:
    # Only what channels need of an image: that it exists, and the versions it declares revoked.
    return {(namespace, body.metadata.name): revocations.declared(body)} if namespace else {}


@kopf.index(GROUP, VERSION, "imagechannels")
def channels_by_namespace(namespace: str | None, body: kopf.Body, **_: Any) -> dict[Any, Any]:
    return {namespace: dict(body)} if namespace else {}


@kopf.index("batch", "v1", "jobs", labels=OURS)
def jobs_by_build(namespace: str | None, labels: kopf.Labels, body: kopf.Body, **_: Any) -> dict[Any, Any]:
    return {(namespace, labels[labels_.BUILD]): dict(body)} if namespace else {}


@kopf.index("", "v1", "pods", labels=OURS)
def pods_by_build(namespace: str | None, labels: kopf.Labels, body: kopf.Body, **_: Any) -> dict[Any, Any]:
    return {(namespace, labels[labels_.BUILD]): dict(body)} if namespace else {}
