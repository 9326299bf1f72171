"""The operator's Kubernetes client against the real API server: creating what exists adopts
it only when it has the same owner, and writing to a missing object says it is gone."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from goldenimage.api.errors import GoneError, OwnedByAnotherError
from goldenimage.api.resources import ImageChannel
from goldenimage.clouds.adapters import Adapters
from goldenimage.config import Config
from goldenimage.kube.client import CONFIGMAPS, IMAGECHANNELS, Kube
from goldenimage.kube.credentials import CloudAccess
from goldenimage.kube.execute import Executor
from goldenimage.kube.ledger import PublicationLedger
from goldenimage.reconcile.actions import PublishConfigMap
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
        with pytest.raises(GoneError):
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
    kube = Kube(cluster.api)
    ledger = PublicationLedger()
    executor = Executor(kube, CloudAccess(kube, Adapters(Config())), Config(), ledger)
    write = PublishConfigMap("taken", {"version": "1"}, key="k1")
    asyncio.run(executor.execute(IMAGECHANNELS, body, ImageChannel.model_validate(body), None, [write]))
    outcome = ledger.outcomes(body["metadata"]["uid"])["configMap"]
    assert not outcome.ok and "is not this channel's" in outcome.message
    assert cluster.get("configmap", "taken", "-n", namespace)["data"] == {"a": "b"}
