"""At most one reconcile per object at a time; a request arriving during a run makes the run
repeat once more instead of waiting in line, so bursts of events coalesce. Delayed requests
(soak times, retries) keep only the earliest."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Hashable

log = logging.getLogger("goldenimage")


class ReconcileQueue:
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
        if not lock.locked() and key not in self._timers:
            self._locks.pop(key, None)

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

    def forget(self, key: Hashable) -> None:
        """The object is gone: drop its pending request."""
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()
