"""The SDK-facing adapters: one per cloud and set of credentials (a GoldenImage's secretRef, or
the process's own identity)."""

from __future__ import annotations

import threading
from collections.abc import Mapping

from ..api.types import CloudName
from ..config import Config
from .aws.adapter import AwsApi
from .base import CloudApi


class Adapters:
    def __init__(self, config: Config) -> None:
        self._config = config
        self._cache: dict[tuple[str, tuple[tuple[str, str], ...]], CloudApi] = {}
        self._lock = threading.Lock()

    def get(self, cloud: CloudName, credentials: Mapping[str, str] | None = None) -> CloudApi | None:
        """The adapter, or None for a cloud this operator has no adapter for."""
        key = (cloud, tuple(sorted((credentials or {}).items())))
        with self._lock:
            if key not in self._cache:
                made = self._make(cloud, credentials or {})
                if made is None:
                    return None
                self._cache[key] = made
            return self._cache[key]

    def _make(self, cloud: CloudName, credentials: Mapping[str, str]) -> CloudApi | None:
        if cloud == "aws":
            return AwsApi(endpoint_url=self._config.aws_endpoint_url, credentials=credentials)
        if cloud == "gcp":
            from .gcp.adapter import GcpApi  # the Google SDK loads only where GCP is used

            return GcpApi(credentials=credentials)
        if cloud == "azure":
            from .azure.adapter import AzureApi  # the Azure SDKs load only where Azure is used

            return AzureApi(credentials=credentials)
        return None
