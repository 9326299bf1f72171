"""What the last publication of each channel did, per cloud: the executor writes it, the next
reconcile reads it into the channel's observation. Kept in memory: after a restart everything
is published again once (publication is idempotent)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

from ..reconcile.imagechannel import PublishOutcome


class PublicationLedger:
    def __init__(self) -> None:
        self._outcomes: dict[str, dict[str, PublishOutcome]] = {}

    def record(self, channel_uid: str, name: str, key: str, ok: bool, message: str) -> None:
        outcome = PublishOutcome(key=key, ok=ok, message=message, at=datetime.now(UTC))
        self._outcomes.setdefault(channel_uid, {})[name] = outcome

    def outcomes(self, channel_uid: str) -> Mapping[str, PublishOutcome]:
        return dict(self._outcomes.get(channel_uid, {}))

    def forget(self, channel_uid: str) -> None:
        self._outcomes.pop(channel_uid, None)
