"""The objects the operator creates besides Jobs (pure): ImageBuilds, the inputs ConfigMap, the
channel's ConfigMap, and how an object is referred to by Events."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..api import labels
from ..api.group import API_VERSION
from ..api.names import inputs
from ..api.resources import CustomResource, GoldenImage, ImageBuild, ImageChannel
from ..reconcile.actions import CreateBuild
from .client import GOLDENIMAGES, IMAGEBUILDS, IMAGECHANNELS, Kind
from .jobs import owner_reference


def kind_of(obj: CustomResource) -> Kind:
    if isinstance(obj, GoldenImage):
        return GOLDENIMAGES
    if isinstance(obj, ImageBuild):
        return IMAGEBUILDS
    assert isinstance(obj, ImageChannel)
    return IMAGECHANNELS


def reference(obj: CustomResource) -> dict[str, Any]:
    """Enough of `obj` for an Event about it."""
    meta = obj.metadata
    return {
        "apiVersion": API_VERSION,
        "kind": kind_of(obj).kind,
        "metadata": {
            "name": meta.name,
            "namespace": meta.namespace,
            "uid": meta.uid,
            "resourceVersion": meta.resource_version,
        },
    }


def image_build(image: GoldenImage, action: CreateBuild) -> dict[str, Any]:
    """A version of `image`, with the finalizer that makes its deletion wait for the clean-up."""
    meta = image.metadata
    return {
        "apiVersion": API_VERSION,
        "kind": "ImageBuild",
        "metadata": {
            "name": action.name,
            "namespace": meta.namespace,
            "labels": labels.for_build(meta.name, action.name, action.spec.version),
            "annotations": dict(action.annotations),
            "finalizers": [labels.FINALIZER],
            "ownerReferences": [
                {**owner_reference("GoldenImage", meta.name, meta.uid or ""), "blockOwnerDeletion": False}
            ],
        },
        "spec": action.spec.wire(),
    }


def inputs_config_map(build: ImageBuild, data: Mapping[str, str]) -> dict[str, Any]:
    """The build's rendered templates and input files, mounted into its Jobs."""
    meta = build.metadata
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": inputs(meta.name),
            "namespace": meta.namespace,
            "labels": labels.for_build(build.spec.image, meta.name, build.spec.version),
            "ownerReferences": [owner_reference("ImageBuild", meta.name, meta.uid or "")],
        },
        "data": dict(data),
        "immutable": True,
    }


def channel_config_map(channel: ImageChannel, name: str, data: Mapping[str, str]) -> dict[str, Any]:
    """The pointer for in-cluster consumers, owned by the channel."""
    meta = channel.metadata
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": name,
            "namespace": meta.namespace,
            "labels": {labels.MANAGED_BY: labels.MANAGER, labels.IMAGE: channel.spec.image},
            "ownerReferences": [
                {**owner_reference("ImageChannel", meta.name, meta.uid or ""), "blockOwnerDeletion": False}
            ],
        },
        "data": dict(data),
    }
