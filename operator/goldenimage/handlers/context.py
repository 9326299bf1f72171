"""What every handler shares: configuration, the Kubernetes client, the cloud adapters, and the
serializer that keeps one reconcile per object at a time."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field

from ..clouds.base import CloudError
from ..clouds.registry import Clouds
from ..config import Config
from ..kube.client import ConflictError, Kube, NotFoundError

log = logging.getLogger("goldenimage")


class Serializer:
    """Runs at most one reconcile per key at a time; a request arriving during a run makes the
    run repeat once more instead of waiting in line, so bursts of events coalesce."""

    def __init__(self) -> None:
        self._locks: dict[Hashable, asyncio.Lock] = {}
        self._again: set[Hashable] = set()
        self._timers: dict[Hashable, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def run(self, key: Hashable, fn: Callable[[], Awaitable[None]]) -> None:
        lock = self._locks.setdefault(key, asyncio.Lock())
        if lock.locked():
            self._again.add(key)
            return
        async with lock:
            while True:
                self._again.discard(key)
                try:
                    await fn()
                except Exception:
                    log.exception("reconciling %s failed; the next event or resync retries", key)
                if key not in self._again:
                    break

    def later(self, key: Hashable, delay: float, fn: Callable[[], Awaitable[None]]) -> None:
        """Run `fn` for `key` after `delay` seconds (an earlier request wins)."""
        loop = asyncio.get_running_loop()
        existing = self._timers.get(key)
        if existing is not None and existing.when() <= loop.time() + delay:
            return
        if existing is not None:
            existing.cancel()

        def fire() -> None:
            self._timers.pop(key, None)
            task = loop.create_task(self.run(key, fn))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

        self._timers[key] = loop.call_later(max(0.0, delay), fire)

    def soon(self, key: Hashable, fn: Callable[[], Awaitable[None]]) -> None:
        self.later(key, 0.0, fn)


# The kinds the operator reconciles, as the keys of its reconcilers.
GOLDENIMAGE, IMAGEBUILD, IMAGECHANNEL = "goldenimage", "imagebuild", "imagechannel"
Reconcile = Callable[["Operator", str, str], Awaitable[None]]
# A conditional status write that lost a race re-plans from the new state at once, this often.
CONFLICT_RETRIES = 5
CLOUD_RETRY_SECONDS = 30.0


class RetryLaterError(Exception):
    """What the reconcile needs cannot be read now; try again in a while."""


@dataclass
class Operator:
    config: Config
    kube: Kube
    clouds: Clouds
    reconcilers: dict[str, Reconcile] = field(default_factory=dict)
    serializer: Serializer = field(default_factory=Serializer)
    # Every object seen, by kind, for the periodic resync. (kopf timers would do, but they make
    # kopf put its finalizer on every object, which then cannot be deleted without the operator.)
    known: dict[str, set[tuple[str, str]]] = field(default_factory=dict)

    async def on_event(self, kind: str, event: str, namespace: str | None, name: str) -> None:
        """A watch event: remember the object for the resync, and reconcile it now."""
        if namespace is None:
            return
        keys = self.known.setdefault(kind, set())
        if event == "DELETED":
            keys.discard((namespace, name))
            return
        keys.add((namespace, name))
        await self.serializer.run((kind, namespace, name), lambda: self._reconcile(kind, namespace, name))

    def trigger(self, kind: str, namespace: str, name: str, delay: float = 0.0) -> None:
        """Reconcile the object after `delay` seconds (an earlier request wins)."""
        self.serializer.later((kind, namespace, name), delay, lambda: self._reconcile(kind, namespace, name))

    async def _reconcile(self, kind: str, namespace: str, name: str) -> None:
        for _ in range(CONFLICT_RETRIES):
            try:
                await self.reconcilers[kind](self, namespace, name)
                return
            except NotFoundError:
                log.info("%s %s/%s is gone", kind, namespace, name)
                return
            except ConflictError:
                log.info("%s %s/%s changed while it was reconciled; planning again", kind, namespace, name)
            except (CloudError, RetryLaterError) as exc:
                log.warning("%s %s/%s: retrying soon: %s", kind, namespace, name, exc)
                self.trigger(kind, namespace, name, CLOUD_RETRY_SECONDS)
                return
        log.warning("%s %s/%s kept changing; the next event retries", kind, namespace, name)

    async def resync_forever(self) -> None:
        """Level-based safety net: every object is reconciled again each resync interval, which
        also heals missed events and drives soak times, source changes and schedules."""
        interval = self.config.resync.total_seconds()
        while True:
            await asyncio.sleep(interval)
            for kind, keys in self.known.items():
                for namespace, name in sorted(keys):
                    self.trigger(kind, namespace, name)


_current: Operator | None = None


def install(operator: Operator) -> None:
    global _current
    _current = operator


def current() -> Operator:
    if _current is None:
        raise RuntimeError("the operator has not started")
    return _current
