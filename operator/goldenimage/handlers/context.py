"""What every handler shares: configuration, the Kubernetes client, cloud access, the executor
of plans, the watch cache, and the queue that keeps one reconcile per object at a time."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from ..api.errors import ConflictError, GoneError, PermanentError, RetryableError
from ..config import Config
from ..kube.client import GOLDENIMAGES, IMAGEBUILDS, IMAGECHANNELS, Kind, Kube
from ..kube.credentials import CloudAccess
from ..kube.execute import Executor
from ..kube.ledger import PublicationLedger
from . import objects
from .cache import Cache
from .queue import ReconcileQueue

log = logging.getLogger("goldenimage")

# The kinds the operator reconciles, as the keys of its reconcilers.
GOLDENIMAGE, IMAGEBUILD, IMAGECHANNEL = "goldenimage", "imagebuild", "imagechannel"
KINDS: dict[str, Kind] = {GOLDENIMAGE: GOLDENIMAGES, IMAGEBUILD: IMAGEBUILDS, IMAGECHANNEL: IMAGECHANNELS}
Reconcile = Callable[["Operator", str, str], Awaitable[None]]
# A conditional status write that lost a race re-plans from the new state at once, this often.
CONFLICT_RETRIES = 5
CLOUD_RETRY_SECONDS = 30.0


@dataclass
class Operator:
    config: Config
    kube: Kube
    clouds: CloudAccess
    cache: Cache
    ledger: PublicationLedger = field(default_factory=PublicationLedger)
    reconcilers: dict[str, Reconcile] = field(default_factory=dict)
    queue: ReconcileQueue = field(default_factory=ReconcileQueue)
    # Every object seen, by kind, for the periodic resync. (kopf timers would do, but they make
    # kopf put its finalizer on every object, which then cannot be deleted without the operator.)
    known: dict[str, set[tuple[str, str]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.executor = Executor(self.kube, self.clouds, self.config, self.ledger)

    async def on_event(self, kind: str, event: str, namespace: str | None, name: str) -> None:
        """A watch event: remember the object for the resync, and reconcile it now."""
        if namespace is None:
            return
        keys = self.known.setdefault(kind, set())
        if event == "DELETED":
            keys.discard((namespace, name))
            self.queue.forget((kind, namespace, name))
            return
        keys.add((namespace, name))
        await self.queue.run((kind, namespace, name), lambda: self._reconcile(kind, namespace, name))

    def trigger(self, kind: str, namespace: str, name: str, delay: float = 0.0) -> None:
        """Reconcile the object after `delay` seconds (an earlier request wins)."""
        self.queue.later((kind, namespace, name), delay, lambda: self._reconcile(kind, namespace, name))

    async def _reconcile(self, kind: str, namespace: str, name: str) -> None:
        for _ in range(CONFLICT_RETRIES):
            try:
                await self.reconcilers[kind](self, namespace, name)
                return
            except GoneError:
                log.info("%s %s/%s is gone", kind, namespace, name)
                return
            except ConflictError:
                log.info("%s %s/%s changed while it was reconciled; planning again", kind, namespace, name)
            except RetryableError as exc:
                log.warning("%s %s/%s: retrying soon: %s", kind, namespace, name, exc)
                self.trigger(kind, namespace, name, CLOUD_RETRY_SECONDS)
                return
            except PermanentError as exc:
                # Retrying cannot help until something changes, which is an event of its own.
                log.warning("%s %s/%s: %s", kind, namespace, name, exc)
                await self._report(kind, namespace, name, exc)
                return
        log.warning("%s %s/%s kept changing; the next event retries", kind, namespace, name)

    async def _report(self, kind: str, namespace: str, name: str, exc: PermanentError) -> None:
        body = await self.kube.get(KINDS[kind], namespace, name)
        if body is not None:
            await objects.report(self.kube, KINDS[kind], body, type(exc).__name__.removesuffix("Error"), str(exc))

    async def resync_forever(self) -> None:
        """Level-based safety net: every object is reconciled again each resync interval, which
        also heals missed events and drives soak times, source changes and schedules."""
        interval = self.config.resync.total_seconds()
        while True:
            await asyncio.sleep(interval)
            for kind, keys in self.known.items():
                for namespace, name in sorted(keys):
                    self.trigger(kind, namespace, name)

    def requeue(self, kind: str, namespace: str, name: str, *delays: float | None) -> None:
        """Reconcile again after the shortest of the delays a plan or its execution asked for."""
        wanted = [d for d in delays if d is not None]
        if wanted:
            self.trigger(kind, namespace, name, max(0.0, min(wanted)))


_current: Operator | None = None


def install(operator: Operator) -> None:
    global _current
    _current = operator


def current() -> Operator:
    if _current is None:
        raise RuntimeError("the operator has not started")
    return _current
