"""kopf settings in one place, and the operator's shared context."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import kopf

from ..api import labels
from ..clouds.adapters import Adapters
from ..config import Config
from ..kube.client import Kube, api_client
from ..kube.credentials import CloudAccess
from . import goldenimages, imagebuilds, imagechannels
from .cache import IndexedCache
from .context import GOLDENIMAGE, IMAGEBUILD, IMAGECHANNEL, Operator, install

_resync: asyncio.Task[None] | None = None


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, **kwargs: Any) -> None:
    """`kwargs` holds the indexes (handlers/indexes.py), by their names."""
    # kopf's finalizer is not ours: the operator adds and removes its own (labels.FINALIZER) and
    # kopf removes its own from objects no kopf handler needs it on. Progress in annotations,
    # never in status (the typed status schema would prune it).
    settings.persistence.finalizer = labels.KOPF_FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=labels.KOPF_PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=labels.KOPF_PREFIX, key="last-handled-configuration"
    )
    # Handler log lines stay in the log; the operator records its own Events.
    settings.posting.level = logging.WARNING
    settings.execution.max_workers = 16
    settings.networking.request_timeout = 60
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    config = Config.from_env()
    kube = Kube(api_client())
    operator = Operator(
        config=config,
        kube=kube,
        clouds=CloudAccess(kube, Adapters(config)),
        cache=IndexedCache(
            kwargs["builds_by_image"],
            kwargs["channels_by_namespace"],
            kwargs["jobs_by_build"],
            kwargs["pods_by_build"],
            kwargs["images_by_name"],
        ),
        reconcilers={
            GOLDENIMAGE: goldenimages.reconcile,
            IMAGEBUILD: imagebuilds.reconcile,
            IMAGECHANNEL: imagechannels.reconcile,
        },
    )
    install(operator)
    global _resync
    _resync = asyncio.create_task(operator.resync_forever())


@kopf.on.cleanup()
async def stop(**_: Any) -> None:
    if _resync is not None:
        _resync.cancel()


@kopf.on.probe(id="ready")
def ready(**_: Any) -> bool:
    return True
