"""The credentials the operator itself uses for a recipe's cloud calls."""

from __future__ import annotations

import base64

from ..api.goldenimage import GoldenImageSpec
from ..clouds.base import Cloud, CloudError
from ..kube.client import SECRETS
from .context import Operator


class CredentialsUnavailableError(CloudError):
    """The recipe names a credentials Secret that cannot be read now. Never fall back to the
    operator's own identity then: in another account everything would look missing."""


async def adapter(op: Operator, recipe: GoldenImageSpec, cloud: str, namespace: str) -> Cloud | None:
    """The cloud adapter for a recipe: with the keys of its credentials Secret if it names one,
    else with the operator's own identity (workload identity). None when there is no adapter for
    that cloud."""
    creds = getattr(recipe.credentials, cloud, None) if recipe.credentials else None
    keys: dict[str, str] = {}
    if creds is not None and creds.secret_ref is not None:
        secret = await op.kube.get(SECRETS, namespace, creds.secret_ref.name)
        if secret is None:
            raise CredentialsUnavailableError(
                f"the {cloud} credentials Secret {namespace}/{creds.secret_ref.name} does not exist"
            )
        keys = {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}
    return op.clouds.get(cloud, keys)
