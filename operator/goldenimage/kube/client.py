"""The one module that talks to the Kubernetes API for the operator (kopf itself aside).

Calls go through the official client's REST layer in worker threads, so the event loop never
blocks. Creation is idempotent ("already exists" returns the existing object: adopt it),
deletion too ("not found" is done), and status writes that must not be lost are conditional on
the resourceVersion the decision was made from (a ConflictError means re-read and re-plan).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from ..api import labels
from ..api.errors import ConflictError, GoneError, OwnedByAnotherError
from ..api.group import GROUP, VERSION
from ..api.identity import controller_uid
from ..api.resources import CustomResource, GoldenImage, ImageBuild, ImageChannel

log = logging.getLogger(__name__)

# The labels that say what an object the operator creates is; adoption requires them equal.
IDENTITY_LABELS = (labels.BUILD, labels.ROLE, labels.TARGET, labels.REGION, labels.ATTEMPT)


@dataclass(frozen=True)
class Kind:
    group: str
    version: str
    plural: str
    kind: str

    def path(self, namespace: str | None, name: str | None = None, subresource: str | None = None) -> str:
        base = f"/api/{self.version}" if not self.group else f"/apis/{self.group}/{self.version}"
        if namespace is not None:
            base += f"/namespaces/{namespace}"
        base += f"/{self.plural}"
        if name is not None:
            base += f"/{name}"
        if subresource is not None:
            base += f"/{subresource}"
        return base


def _ours(resource: type[CustomResource]) -> Kind:
    definition = resource.definition
    return Kind(GROUP, VERSION, definition.plural, definition.kind)


GOLDENIMAGES = _ours(GoldenImage)
IMAGEBUILDS = _ours(ImageBuild)
IMAGECHANNELS = _ours(ImageChannel)
JOBS = Kind("batch", "v1", "jobs", "Job")
PODS = Kind("", "v1", "pods", "Pod")
CONFIGMAPS = Kind("", "v1", "configmaps", "ConfigMap")
SECRETS = Kind("", "v1", "secrets", "Secret")
SERVICEACCOUNTS = Kind("", "v1", "serviceaccounts", "ServiceAccount")
EVENTS = Kind("", "v1", "events", "Event")


def diff_as_merge_patch(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """The JSON merge patch (RFC 7386) that turns `old` into `new`: a key `new` lacks becomes
    null, which removes it; lists are replaced whole."""
    patch: dict[str, Any] = {}
    for key in old.keys() - new.keys():
        patch[key] = None
    for key, value in new.items():
        before = old.get(key)
        if isinstance(value, dict) and isinstance(before, dict):
            nested = diff_as_merge_patch(before, value)
            if nested:
                patch[key] = nested
        elif value != before:
            patch[key] = value
    return patch


def api_client() -> client.ApiClient:
    """In-cluster credentials, else the kubeconfig (KUBECONFIG or ~/.kube/config)."""
    if os.environ.get("KUBERNETES_SERVICE_HOST") and not os.environ.get("KUBECONFIG"):
        config.load_incluster_config()
        return client.ApiClient()
    return config.new_client_from_config(config_file=os.environ.get("KUBECONFIG"))


class Kube:
    def __init__(self, api: client.ApiClient, *, component: str = "goldenimage-operator") -> None:
        self.api = api
        self.component = component
        # Threads of its own: slow cloud calls in the default executor never hold up the API.
        self._threads = ThreadPoolExecutor(max_workers=8, thread_name_prefix="kube")

    # -- raw -------------------------------------------------------------------------------

    def _request_sync(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        query: list[tuple[str, str]] | None = None,
        content_type: str = "application/json",
    ) -> Any:
        try:
            response = self.api.call_api(
                path,
                method,
                query_params=query or [],
                header_params={"Accept": "application/json", "Content-Type": content_type},
                body=body,
                auth_settings=["BearerToken"],
                _preload_content=False,
                _return_http_data_only=True,
                _request_timeout=60,
            )
        except ApiException as exc:
            if exc.status == 404:
                raise GoneError(path) from exc
            if exc.status == 409 and method in ("PATCH", "PUT"):
                raise ConflictError(path) from exc
            raise
        data = response.data
        return json.loads(data) if data else None

    async def request(self, method: str, path: str, **kwargs: Any) -> Any:
        call = functools.partial(self._request_sync, method, path, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(self._threads, call)

    # -- objects ---------------------------------------------------------------------------

    async def get(self, kind: Kind, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            found: dict[str, Any] = await self.request("GET", kind.path(namespace, name))
        except GoneError:
            return None
        return found

    async def list(self, kind: Kind, namespace: str, selector: str | None = None) -> list[dict[str, Any]]:
        query = [("labelSelector", selector)] if selector else []
        found = await self.request("GET", kind.path(namespace), query=query)
        items: list[dict[str, Any]] = found.get("items", [])
        return items

    async def create(self, kind: Kind, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        """Create, or return the object of that name if it already exists and has the same
        owner (to be adopted). One of another owner (say, left by an earlier object of the same
        name until the garbage collector takes it) is an OwnedByAnotherError."""
        name = body["metadata"]["name"]
        try:
            created: dict[str, Any] = await self.request("POST", kind.path(namespace), body=body)
            return created
        except ApiException as exc:
            if exc.status != 409:
                raise
        existing = await self.get(kind, namespace, name)
        if existing is None:  # deleted in between: the next reconcile creates it again
            raise ConflictError(f"{kind.kind} {name} was deleted while being adopted")
        if controller_uid(body) != controller_uid(existing):
            raise OwnedByAnotherError(f"{kind.kind} {name} exists and belongs to another owner")
        mine, theirs = body["metadata"].get("labels") or {}, existing["metadata"].get("labels") or {}
        differ = sorted(k for k in IDENTITY_LABELS if mine.get(k) != theirs.get(k))
        if differ:
            # Same owner, yet not the object this name is for: never adopted as if it were.
            raise OwnedByAnotherError(f"{kind.kind} {name} exists but is another object (labels {', '.join(differ)})")
        return existing

    async def delete(self, kind: Kind, namespace: str, name: str, *, propagation: str = "Background") -> None:
        with contextlib.suppress(GoneError):
            await self.request("DELETE", kind.path(namespace, name), body={"propagationPolicy": propagation})

    async def replace(self, kind: Kind, namespace: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        """PUT the whole object; with metadata.resourceVersion set, Conflict if it changed."""
        replaced: dict[str, Any] = await self.request("PUT", kind.path(namespace, name), body=body)
        return replaced

    async def merge_patch(
        self, kind: Kind, namespace: str, name: str, patch: dict[str, Any], *, subresource: str | None = None
    ) -> dict[str, Any]:
        """A JSON merge patch. With metadata.resourceVersion in the patch it is conditional:
        ConflictError if the object changed since."""
        patched: dict[str, Any] = await self.request(
            "PATCH",
            kind.path(namespace, name, subresource),
            body=patch,
            content_type="application/merge-patch+json",
        )
        return patched

    async def remove_finalizer(self, kind: Kind, namespace: str, name: str, finalizer: str) -> None:
        """Remove `finalizer` from the object, leaving the others (which their controllers add and
        remove meanwhile) as they are: conditional on the version read, tried again on conflict.
        An object already without it, or gone, is done."""
        for _ in range(5):
            found = await self.get(kind, namespace, name)
            if found is None:
                return
            meta = found["metadata"]
            finalizers = meta.get("finalizers") or []
            if finalizer not in finalizers:
                return
            patch = {
                "metadata": {
                    "finalizers": [f for f in finalizers if f != finalizer],
                    "resourceVersion": meta["resourceVersion"],
                }
            }
            try:
                await self.merge_patch(kind, namespace, name, patch)
                return
            except GoneError:
                return
            except ConflictError:
                continue
        raise ConflictError(f"{kind.kind} {name} kept changing while its finalizer was removed")

    async def write_status(
        self,
        kind: Kind,
        namespace: str,
        name: str,
        status: dict[str, Any],
        *,
        resource_version: str | None,
        old: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Make status equal `status`; conditional on `resource_version` when given. Fields of
        `old` (the status the decision was made from) that `status` lacks are removed."""
        patch: dict[str, Any] = {"status": diff_as_merge_patch(old or {}, status)}
        if resource_version is not None:
            patch["metadata"] = {"resourceVersion": resource_version}
        return await self.merge_patch(kind, namespace, name, patch, subresource="status")

    # -- events ----------------------------------------------------------------------------

    async def event(self, obj: dict[str, Any], type_: str, reason: str, message: str) -> None:
        """Record an Event on `obj`; failures are logged, never raised (Events are best effort)."""
        meta = obj["metadata"]
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": obj["apiVersion"],
                "kind": obj["kind"],
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta.get("uid"),
                "resourceVersion": meta.get("resourceVersion"),
            },
            "type": type_,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": self.component},
            "reportingComponent": self.component,
            "reportingInstance": os.environ.get("HOSTNAME", self.component),
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        try:
            await self.request("POST", EVENTS.path(meta["namespace"]), body=body)
        except Exception as exc:
            log.warning("could not record event %s on %s/%s: %s", reason, meta["namespace"], meta["name"], exc)
