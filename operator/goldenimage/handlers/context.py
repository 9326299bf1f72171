"""What every handler shares: configuration, the Kubernetes client, the cloud adapters, and the
serializer that keeps one reconcile per object at a time."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field

from ..clouds.registry import Clouds
from ..config import Config
from ..kube.client import Kube

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


Trigger = Callable[["Operator", str, str], None]


@dataclass
class Operator:
    config: Config
    kube: Kube
    clouds: Clouds
    serializer: Serializer = field(default_factory=Serializer)
    # Every object seen, by kind, for the periodic resync. (kopf timers would do, but they make
    # kopf put its finalizer on every object, which then cannot be deleted without the operator.)
    known: dict[str, set[tuple[str, str]]] = field(default_factory=dict)
    triggers: dict[str, Trigger] = field(default_factory=dict)

    def track(self, kind: str, namespace: str, name: str, *, present: bool) -> None:
        keys = self.known.setdefault(kind, set())
        if present:
            keys.add((namespace, name))
        else:
            keys.discard((namespace, name))

    async def resync_forever(self) -> None:
        """Level-based safety net: every object is reconciled again each resync interval, which
        also heals missed events and drives soak times, source changes and schedules."""
        interval = self.config.resync.total_seconds()
        while True:
            await asyncio.sleep(interval)
            for kind, keys in self.known.items():
                trigger = self.triggers.get(kind)
                if trigger is not None:
                    for namespace, name in sorted(keys):
                        trigger(self, namespace, name)


_current: Operator | None = None


def install(operator: Operator) -> None:
    global _current
    _current = operator


def current() -> Operator:
    if _current is None:
        raise RuntimeError("the operator has not started")
    return _current
