"""Asynchronous long-running operations: a 201/202 answer with `Azure-AsyncOperation` and
`Location` URLs, polled until the operation's work is done.

Every answer carries `Retry-After: 1`: without it go-autorest (Packer) and azure-core wait their
long defaults (30 s and more) between polls. An operation reports "InProgress" for the number of
polls the test chose, then until its work (a machine boot, a replication) is done.
"""

from __future__ import annotations

import datetime
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

from .errors import ArmError

RETRY_AFTER = {"Retry-After": "1"}
Status = Literal["InProgress", "Succeeded", "Failed"]


def now_iso() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f0Z")


@dataclass
class Operation:
    id: str
    subscription: str
    namespace: str
    location: str
    polls_left: int
    future: Future[None] | None
    ready: Callable[[], bool] | None  # a condition besides the work (replication complete)
    result: Callable[[], dict[str, Any] | None] | None  # the final body the Location URL returns
    started: str = field(default_factory=now_iso)
    ended: str | None = None

    @property
    def path(self) -> str:
        return f"{self._base}/operations/{self.id}"

    @property
    def result_path(self) -> str:
        return f"{self._base}/operationResults/{self.id}"

    @property
    def _base(self) -> str:
        return f"/subscriptions/{self.subscription}/providers/{self.namespace}/locations/{self.location}"

    def headers(self, *, location: bool) -> dict[str, str]:
        base = "https://management.azure.com"
        out = {"Azure-AsyncOperation": f"{base}{self.path}?api-version=2024-03-01", **RETRY_AFTER}
        if location:
            out["Location"] = f"{base}{self.result_path}?api-version=2024-03-01"
        return out


class Operations:
    """The operations of one fake; work runs on a small thread pool."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._operations: dict[str, Operation] = {}
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="arm-fake-operation")

    def start(
        self,
        *,
        subscription: str,
        namespace: str,
        location: str,
        polls: int,
        work: Callable[[], None] | None = None,
        ready: Callable[[], bool] | None = None,
        result: Callable[[], dict[str, Any] | None] | None = None,
    ) -> Operation:
        future = self._pool.submit(work) if work is not None else None
        operation = Operation(
            uuid.uuid4().hex, subscription, namespace, location or "global", polls, future, ready, result
        )
        with self._lock:
            self._operations[operation.id] = operation
        return operation

    def poll(self, operation_id: str) -> tuple[Operation, Status, ArmError | None]:
        """The operation's status now; each call counts as one poll."""
        with self._lock:
            operation = self._operations.get(operation_id)
            if operation is None:
                raise ArmError(404, "OperationNotFound", f"The operation '{operation_id}' was not found.")
            if operation.polls_left > 0:
                operation.polls_left -= 1
                return operation, "InProgress", None
        if operation.future is not None and not operation.future.done():
            return operation, "InProgress", None
        if operation.ready is not None and not operation.ready():
            return operation, "InProgress", None
        error = _error(operation.future)
        operation.ended = operation.ended or now_iso()
        return operation, ("Failed" if error else "Succeeded"), error

    def wait(self, timeout: float) -> None:
        """Block until every operation's work has finished (for a test's teardown)."""
        with self._lock:
            futures = [o.future for o in self._operations.values() if o.future is not None]
        for future in futures:
            future.exception(timeout=timeout)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def _error(future: Future[None] | None) -> ArmError | None:
    if future is None:
        return None
    exc = future.exception()
    if exc is None:
        return None
    if isinstance(exc, ArmError):
        return exc
    return ArmError(500, "InternalServerError", f"The operation failed: {exc}")
