"""kopf settings in one place, and the operator's shared context."""

from __future__ import annotations

import logging
from typing import Any

import kopf

from ..clouds.registry import Clouds
from ..config import Config
from ..kube import labels
from ..kube.client import Kube, api_client
from .context import Operator, install


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
    # Bounded retries with backoff for the one retried handler (deletion clean-up).
    settings.execution.max_workers = 16
    settings.networking.request_timeout = 60
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    install(Operator(config=Config.from_env(), kube=Kube(api_client()), clouds=Clouds(Config.from_env())))


@kopf.on.probe(id="ready")
def ready(**_: Any) -> bool:
    return True
