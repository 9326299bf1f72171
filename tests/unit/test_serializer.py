"""One reconcile per object at a time; a burst of requests during a run makes exactly one more."""

from __future__ import annotations

import asyncio

from goldenimage.handlers.queue import ReconcileQueue


def test_requests_during_a_run_coalesce_into_one_more_run() -> None:
    async def scenario() -> list[int]:
        serializer = ReconcileQueue()
        runs: list[int] = []
        started, release = asyncio.Event(), asyncio.Event()

        async def reconcile() -> None:
            runs.append(len(runs))
            started.set()
            if len(runs) == 1:
                await release.wait()

        first = asyncio.create_task(serializer.run("a", reconcile))
        await started.wait()
        for _ in range(5):
            await serializer.run("a", reconcile)  # returns at once: the running one repeats
        await serializer.run("b", reconcile)  # another key runs on its own
        release.set()
        await first
        return runs

    assert asyncio.run(scenario()) == [0, 1, 2]


def test_a_failing_reconcile_does_not_wedge_the_key() -> None:
    async def scenario() -> int:
        serializer = ReconcileQueue()
        calls = 0

        async def boom() -> None:
            nonlocal calls
            calls += 1
            raise RuntimeError("cloud down")

        await serializer.run("a", boom)
        await serializer.run("a", boom)
        return calls

    assert asyncio.run(scenario()) == 2
