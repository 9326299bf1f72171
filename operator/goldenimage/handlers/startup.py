"""kopf settings in one place, and the operator's shared context."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import kopf

from ..clouds.registry import Clouds
from ..config import Config
from ..kube import labels
from ..kube.client import Kube, api_client
from . import goldenimages, imagebuilds, imagechannels
from .context import GOLDENIMAGE, IMAGEBUILD, IMAGECHANNEL, Operator, install

_resync: asyncio.Task[None] | None = None


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    # Our own finalizer and annotation prefix; progress in annotations, never in status (the
    # typed status schema would prune it).
    settings.persistence.finalizer = labels.FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="goldenimage.io")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix="goldenimage.io", key="last-handled-configuration"
    )
    # Handler log lines stay in the log; the operator records its own Events.
    settings.posting.level = logging.WARNING
    settings.execution.max_workers = 16
    settings.networking.request_timeout = 60
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    config = Config.from_env()
    operator = Operator(
        config=config,
        kube=Kube(api_client()),
        clouds=Clouds(config),
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
