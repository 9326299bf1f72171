"""The operator's Kubernetes client against the real API server: creating what exists adopts
it only when it has the same owner, and writing to a missing object says it is gone."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from goldenimage.api.imagechannel import ImageChannelStatus
from goldenimage.api.resources import ImageChannel
from goldenimage.clouds.registry import Clouds
from goldenimage.config import Config
from goldenimage.handlers import imagechannels
from goldenimage.handlers.context import Operator
from goldenimage.kube.client import CONFIGMAPS, Kube, NotFoundError, OwnedByAnotherError
from support.cluster import Cluster

pytestmark = pytest.mark.integration


def config_map(owner_uid: str | None) -> dict[str, Any]:
    owners = [{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner_uid, "controller": True}]
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "child", **({"ownerReferences": owners} if owner_uid else {})},
        "data": {"from": owner_uid or "nobody"},
    }


def test_create_adopts_only_what_the_same_owner_made(cluster: Cluster, namespace: str) -> None:
    kube = Kube(cluster.api)
    # The owner must exist, or the garbage collector would take the child at once.
    cluster.apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "owner"}}, namespace)
    uid = cluster.get("configmap", "owner", "-n", namespace)["metadata"]["uid"]

    async def scenario() -> None:
        first = await kube.create(CONFIGMAPS, namespace, config_map(uid))
        again = await kube.create(CONFIGMAPS, namespace, config_map(uid))
        assert again["metadata"]["uid"] == first["metadata"]["uid"]  # adopted, not created twice
        with pytest.raises(OwnedByAnotherError):
            await kube.create(CONFIGMAPS, namespace, config_map("00000000-0000-0000-0000-000000000000"))
        with pytest.raises(NotFoundError):
            await kube.merge_patch(CONFIGMAPS, namespace, "missing", {"data": {"a": "b"}})

    asyncio.run(scenario())
    assert cluster.get("configmap", "child", "-n", namespace)["data"] == {"from": uid}


def test_a_channel_never_takes_over_a_config_map_it_does_not_own(cluster: Cluster, namespace: str) -> None:
    cluster.apply(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "taken"}, "data": {"a": "b"}}, namespace
    )
    channel = {
        "apiVersion": "goldenimage.io/v1alpha1",
        "kind": "ImageChannel",
        "metadata": {"name": "web-prod"},
        "spec": {"image": "web-base", "source": {"latestValidated": {}}, "publish": {"configMap": {"name": "taken"}}},
    }
    cluster.apply(channel, namespace)
    body = cluster.get("imagechannel", "web-prod", "-n", namespace)
    op = Operator(config=Config(), kube=Kube(cluster.api), clouds=Clouds(Config()))
    with pytest.raises(imagechannels.PublishError, match="is not this channel's"):
        asyncio.run(imagechannels.publish_config_map(op, ImageChannel.model_validate(body), ImageChannelStatus()))
    assert cluster.get("configmap", "taken", "-n", namespace)["data"] == {"a": "b"}
