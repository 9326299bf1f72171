"""Choosing the adapter for a target's cloud and credentials."""

from __future__ import annotations

from collections.abc import Mapping

from ..config import Config
from .aws import Aws
from .base import Cloud


class Clouds:
    """Adapters by cloud; one per distinct set of credentials (a GoldenImage's secretRef)."""

    def __init__(self, config: Config) -> None:
        self._config = config
        self._cache: dict[tuple[str, tuple[tuple[str, str], ...]], Cloud] = {}

    def get(self, cloud: str, credentials: Mapping[str, str] | None = None) -> Cloud | None:
        """The adapter, or None for a cloud this operator has no adapter for yet."""
        key = (cloud, tuple(sorted((credentials or {}).items())))
        if key not in self._cache:
            if cloud != "aws":
                return None
            self._cache[key] = Aws(endpoint_url=self._config.aws_endpoint_url, credentials=credentials)
        return self._cache[key]
