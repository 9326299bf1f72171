"""The credentials the operator itself uses for a GoldenImage's cloud calls."""

from __future__ import annotations

import base64

from ..api.goldenimage import GoldenImageSpec
from ..clouds.base import Cloud
from ..kube.client import SECRETS
from .context import Operator


async def adapter(op: Operator, recipe: GoldenImageSpec, cloud: str, namespace: str) -> Cloud | None:
    """The cloud adapter for a recipe: with the keys of its credentials Secret if it names one,
    else with the operator's own identity. None when there is no adapter for that cloud."""
    creds = getattr(recipe.credentials, cloud, None) if recipe.credentials else None
    keys: dict[str, str] = {}
    if creds is not None and creds.secret_ref is not None:
        secret = await op.kube.get(SECRETS, namespace, creds.secret_ref.name)
        if secret is not None:
            keys = {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}
    return op.clouds.get(cloud, keys)
