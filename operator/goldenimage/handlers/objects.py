"""Reading an object for its reconcile, and reporting what stops it. One the API server admitted
but the models refuse (e.g. a cron field out of range) is not reconciled: its Ready condition
says why, nothing else of its status changes, and nothing crashes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, TypeVar

from pydantic import ValidationError

from ..api.messages import summary
from ..api.resources import CustomResource
from ..kube.client import Kind, Kube

R = TypeVar("R", bound=CustomResource)


async def read_valid(
    kube: Kube, kind: Kind, model: type[R], namespace: str, name: str
) -> tuple[dict[str, Any], R] | None:
    """The object and its model; None when it is gone or refused by the models (reported)."""
    body = await kube.get(kind, namespace, name)
    if body is None:
        return None
    try:
        return body, model.model_validate(body)
    except ValidationError as exc:
        if not body["metadata"].get("deletionTimestamp"):
            await report(kube, kind, body, "InvalidSpec", summary(exc))
        return None


async def report(kube: Kube, kind: Kind, body: dict[str, Any], reason: str, message: str) -> None:
    """Ready=False with `reason` and an Event, once (nothing is written when it says so already)."""
    meta = body["metadata"]
    old = body.get("status") if isinstance(body.get("status"), dict) else {}
    assert isinstance(old, dict)
    conditions = [c for c in old.get("conditions") or [] if isinstance(c, dict)]
    ready = next((c for c in conditions if c.get("type") == "Ready"), None)
    message = message[:32768]
    if ready is not None and (ready.get("status"), ready.get("reason"), ready.get("message")) == (
        "False",
        reason,
        message,
    ):
        return
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    since = ready["lastTransitionTime"] if ready is not None and ready.get("status") == "False" else now
    condition = {
        "type": "Ready",
        "status": "False",
        "reason": reason,
        "message": message,
        "lastTransitionTime": since,
        "observedGeneration": meta.get("generation"),
    }
    new = {
        **old,
        "conditions": [c for c in conditions if c.get("type") != "Ready"] + [condition],
        "observedGeneration": meta.get("generation"),
    }
    await kube.write_status(
        kind, meta["namespace"], meta["name"], new, resource_version=meta.get("resourceVersion"), old=old
    )
    await kube.event(body, "Warning", reason, message)
