"""Reading an object for its reconcile. One the API server admitted but the models refuse (e.g.
a cron field out of range) is not reconciled: its Ready condition says why, nothing else of its
status changes, and nothing crashes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, TypeVar

from pydantic import ValidationError

from ..api.errors import summary
from ..api.resources import Resource
from ..kube.client import Kind
from .context import Operator

R = TypeVar("R", bound=Resource)


async def read(op: Operator, kind: Kind, model: type[R], namespace: str, name: str) -> tuple[dict[str, Any], R] | None:
    """The object and its model; None when it is gone, being deleted, or refused by the models."""
    body = await op.kube.get(kind, namespace, name)
    if body is None or body["metadata"].get("deletionTimestamp"):
        return None
    try:
        return body, model.model_validate(body)
    except ValidationError as exc:
        await report(op, kind, body, summary(exc))
        return None


async def report(op: Operator, kind: Kind, body: dict[str, Any], message: str) -> None:
    meta = body["metadata"]
    old = body.get("status") if isinstance(body.get("status"), dict) else {}
    assert isinstance(old, dict)
    conditions = [c for c in old.get("conditions") or [] if isinstance(c, dict)]
    ready = next((c for c in conditions if c.get("type") == "Ready"), None)
    message = message[:32768]
    if ready is not None and (ready.get("status"), ready.get("reason"), ready.get("message")) == (
        "False",
        "InvalidSpec",
        message,
    ):
        return
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    since = ready["lastTransitionTime"] if ready is not None and ready.get("status") == "False" else now
    condition = {
        "type": "Ready",
        "status": "False",
        "reason": "InvalidSpec",
        "message": message,
        "lastTransitionTime": since,
        "observedGeneration": meta.get("generation"),
    }
    new = {
        **old,
        "conditions": [c for c in conditions if c.get("type") != "Ready"] + [condition],
        "observedGeneration": meta.get("generation"),
    }
    await op.kube.write_status(
        kind, meta["namespace"], meta["name"], new, resource_version=meta.get("resourceVersion"), old=old
    )
    await op.kube.event(body, "Warning", "InvalidSpec", message)
