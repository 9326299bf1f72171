"""Objects the API server admitted but the models refuse (e.g. a cron field out of range): the
Ready condition says why, nothing else of the status changes, and nothing crashes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from ..kube.client import Kind
from .context import Operator


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
