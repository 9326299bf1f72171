"""SIGTERM and SIGINT as a flag: the work in progress notices it at a safe point and cleans up
(Packer deletes what it created, validation terminates its instance) instead of being cut off
half-way. The previous handlers come back afterwards."""

from __future__ import annotations

import signal
from collections.abc import Callable
from types import FrameType, TracebackType

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Stop:
    def __init__(self) -> None:
        self.received: str | None = None
        # Called on a signal, e.g. to pass it on to a child process.
        self.on_signal: Callable[[int], None] | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> Stop:
        self._previous = {s: signal.signal(s, self._handle) for s in STOP_SIGNALS}
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.received = signal.Signals(signum).name
        if self.on_signal is not None:
            self.on_signal(signum)
