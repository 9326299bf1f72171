"""Status writes that must not be lost are conditional: the second of two writers working from
the same resourceVersion gets a Conflict instead of overwriting the first."""

from __future__ import annotations

import asyncio

import pytest

from goldenimage.api.errors import ConflictError
from goldenimage.kube.client import IMAGECHANNELS, Kube
from support.cluster import Cluster
from support.manifests import image_channel

pytestmark = pytest.mark.integration

ENTRY = {"build": "web-base-{v}", "promotedAt": "2026-11-21T10:00:00Z", "reason": "LatestValidated", "artifacts": []}


def test_two_concurrent_pointer_moves_never_lose_one(cluster: Cluster, namespace: str) -> None:
    cluster.apply(image_channel("web-prod", "web-base"), namespace)
    kube = Kube(cluster.api)

    async def scenario() -> None:
        read = await kube.get(IMAGECHANNELS, namespace, "web-prod")
        assert read is not None
        version = read["metadata"]["resourceVersion"]
        first = {"current": {**ENTRY, "version": 2, "build": "web-base-2"}}
        second = {"current": {**ENTRY, "version": 3, "build": "web-base-3"}}
        await kube.write_status(IMAGECHANNELS, namespace, "web-prod", first, resource_version=version)
        with pytest.raises(ConflictError):
            await kube.write_status(IMAGECHANNELS, namespace, "web-prod", second, resource_version=version)

    asyncio.run(scenario())
    assert cluster.get("imagechannel", "web-prod", "-n", namespace)["status"]["current"]["version"] == 2
