"""The cloud identity the operator uses for a recipe's own cloud calls: the keys of its
credentials Secret when it names one, else the operator's own (workload identity)."""

from __future__ import annotations

import base64
import binascii

from ..api.errors import CredentialsUnavailableError
from ..api.goldenimage import CloudCredentials
from ..api.types import CloudName
from ..clouds.adapters import Adapters
from ..clouds.base import CloudApi
from .client import SECRETS, Kube


class CloudAccess:
    def __init__(self, kube: Kube, adapters: Adapters) -> None:
        self.kube = kube
        self.adapters = adapters

    async def adapter(self, creds: CloudCredentials | None, cloud: CloudName, namespace: str) -> CloudApi | None:
        """The adapter for a recipe's cloud calls (`creds`: the recipe's credentials for that
        cloud); None when there is no adapter for the cloud. A credentials Secret that cannot be
        read is never replaced by the operator's identity."""
        keys: dict[str, str] = {}
        if creds is not None and creds.secret_ref is not None:
            name = creds.secret_ref.name
            secret = await self.kube.get(SECRETS, namespace, name)
            if secret is None:
                raise CredentialsUnavailableError(f"the {cloud} credentials Secret {namespace}/{name} does not exist")
            try:
                keys = {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}
            except (binascii.Error, UnicodeDecodeError) as exc:
                raise CredentialsUnavailableError(
                    f"the {cloud} credentials Secret {namespace}/{name} holds a value that is not UTF-8 text: {exc}"
                ) from exc
        return self.adapters.get(cloud, keys)
