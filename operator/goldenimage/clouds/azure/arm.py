"""Azure Resource Manager calls as the adapter and the publisher make them: credentials, one set
of SDK clients per subscription, waiting for long-running operations, tags through the Tags API,
and what ARM's answers mean to the operator.

Credentials, in this order: a GoldenImage's `credentials.azure.secretRef` Secret
(`ARM_CLIENT_ID`, `ARM_CLIENT_SECRET`, `ARM_TENANT_ID`, optionally `ARM_SUBSCRIPTION_ID`, the
names Packer reads too); the same variables in the environment (a build Job with that Secret);
else `DefaultAzureCredential` (the `AZURE_*` variables, workload identity, managed identity).

Errors: throttling, outages, conflicts with work in progress and anything that may pass are
CloudError (retried later); a permission the credentials lack, a quota, refused credentials, a
subscription, resource group, gallery or image that does not exist and a request ARM calls
invalid are CloudRefusedError (a condition says what to change); "not found" is returned as None
where a caller asks for it.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from azure.core.credentials import TokenCredential
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.core.pipeline.policies import HeadersPolicy, RetryPolicy, UserAgentPolicy
from azure.core.polling import LROPoller
from azure.core.rest import HttpRequest, HttpResponse
from azure.identity import ClientSecretCredential, DefaultAzureCredential
from azure.mgmt.compute import ComputeManagementClient
from azure.mgmt.core import ARMPipelineClient
from azure.mgmt.core.policies import ARMChallengeAuthenticationPolicy
from azure.mgmt.network import NetworkManagementClient
from azure.mgmt.resource.resources import ResourceManagementClient

from ...api.errors import CloudError, CloudRefusedError, GoldenImageError

MANAGEMENT = "https://management.azure.com"
SCOPE = f"{MANAGEMENT}/.default"
SUBSCRIPTIONS_API = "2022-12-01"
# Seconds: one request, and one long-running operation (a VM or a replicated version takes minutes).
CALL_TIMEOUT = 60
OPERATION_TIMEOUT = 1800.0
# The SDK retries throttling and server errors itself; a few times, so a refusal surfaces quickly.
RETRIES = 4

SECRET_KEYS = ("ARM_CLIENT_ID", "ARM_CLIENT_SECRET", "ARM_TENANT_ID")
SUBSCRIPTION_KEYS = ("ARM_SUBSCRIPTION_ID", "AZURE_SUBSCRIPTION_ID")

_QUOTA = {"QuotaExceeded", "OperationNotAllowedQuota", "SkuNotAvailable", "ZonalAllocationFailed"}
_REFUSED = {
    "AuthorizationFailed",
    "LinkedAuthorizationFailed",
    "InvalidAuthenticationToken",
    "InvalidAuthenticationTokenTenant",
    "AuthenticationFailed",
    "SubscriptionNotFound",
    "ResourceGroupNotFound",
    "ResourceNotFound",
    "NotFound",
    "GalleryImageNotFound",
    "PlatformImageNotFound",
    "InvalidParameter",
    "InvalidRequestContent",
    "InvalidTemplate",
    "LocationNotAvailableForResourceType",
    "LocationRequired",
    "InvalidResourceReference",
    "InvalidResourceLocation",
    "BadRequest",
    "NotSupportedByFake",
}

T = TypeVar("T")


def codes(exc: HttpResponseError) -> set[str]:
    """The error codes of an ARM error, with those of its details (a failed deployment or
    operation nests the reason)."""
    found: set[str] = set()
    error = exc.error
    stack = [error] if error is not None else []
    while stack:
        item = stack.pop()
        if getattr(item, "code", None):
            found.add(str(item.code))
        stack.extend(getattr(item, "details", None) or [])
    return found


def translate(exc: BaseException, what: str) -> GoldenImageError:
    """The operator's error for a failed call."""
    if isinstance(exc, ClientAuthenticationError):
        return CloudRefusedError(f"{what}: the Azure credentials were refused: {_message(exc)}")
    if isinstance(exc, HttpResponseError):
        found = codes(exc)
        message = f"{what}: {_message(exc)}"
        quota = found & _QUOTA or ("OperationNotAllowed" in found and "quota" in message.lower())
        if quota:
            return CloudRefusedError(f"{message} (a quota is exhausted: free resources or raise the quota)")
        if exc.status_code == 403 or found & {"AuthorizationFailed", "LinkedAuthorizationFailed"}:
            return CloudRefusedError(f"{message} (the credentials lack this permission)")
        if exc.status_code == 429 or (exc.status_code or 0) >= 500:
            return CloudError(message)
        if isinstance(exc, ResourceNotFoundError) or exc.status_code == 404:
            return CloudRefusedError(f"{message} (does the subscription, resource group, gallery or image exist?)")
        if found & _REFUSED or exc.status_code == 400:
            return CloudRefusedError(message)
        return CloudError(message)
    if isinstance(exc, ServiceRequestError | ServiceResponseError | AzureError | OSError):
        return CloudError(f"{what}: {exc}")
    return CloudError(f"{what}: {type(exc).__name__}: {exc}")


def _message(exc: HttpResponseError) -> str:
    error = exc.error
    if error is not None and getattr(error, "message", None):
        return f"{error.code}: {error.message}"
    return str(exc.message or exc).splitlines()[0]


class Credentials:
    """Which identity the clients use, and the subscription it names, if any."""

    def __init__(self, given: Mapping[str, str] | None) -> None:
        keys = dict(given or {})
        if not keys and all(os.environ.get(k) for k in SECRET_KEYS):
            keys = {k: os.environ[k] for k in (*SECRET_KEYS, *SUBSCRIPTION_KEYS) if os.environ.get(k)}
        self.subscription = next((keys[k] for k in SUBSCRIPTION_KEYS if keys.get(k)), None) or next(
            (os.environ[k] for k in SUBSCRIPTION_KEYS if os.environ.get(k)), None
        )
        present = [k for k in SECRET_KEYS if keys.get(k)]
        self.problem: str | None = None
        self.credential: TokenCredential | None = None
        if present and len(present) < len(SECRET_KEYS):
            missing = ", ".join(k for k in SECRET_KEYS if k not in present)
            self.problem = f"the Azure credentials Secret lacks {missing}"
        elif present:
            self.credential = ClientSecretCredential(
                keys["ARM_TENANT_ID"], keys["ARM_CLIENT_ID"], keys["ARM_CLIENT_SECRET"]
            )
        else:
            self.credential = DefaultAzureCredential()

    def get(self) -> TokenCredential:
        if self.credential is None:
            raise CloudRefusedError(self.problem or "no Azure credentials")
        return self.credential


class Arm:
    def __init__(self, credentials: Mapping[str, str] | None = None) -> None:
        self._credentials = Credentials(credentials)
        self._clients: dict[tuple[str, str], Any] = {}
        self._pipeline: ARMPipelineClient[HttpRequest, HttpResponse] | None = None
        self._lock = threading.Lock()

    @property
    def default_subscription(self) -> str | None:
        return self._credentials.subscription

    def _client(self, kind: str, subscription: str) -> Any:
        key = (kind, subscription.lower())
        with self._lock:
            if key not in self._clients:
                make = {
                    "compute": ComputeManagementClient,
                    "network": NetworkManagementClient,
                    "resources": ResourceManagementClient,
                }[kind]
                self._clients[key] = make(
                    self._credentials.get(),
                    subscription,
                    retry_total=RETRIES,
                    connection_timeout=CALL_TIMEOUT,
                    read_timeout=CALL_TIMEOUT,
                )
            return self._clients[key]

    def compute(self, subscription: str) -> Any:
        return self._client("compute", subscription)

    def network(self, subscription: str) -> Any:
        return self._client("network", subscription)

    def resources(self, subscription: str) -> Any:
        return self._client("resources", subscription)

    # -- calls -----------------------------------------------------------------------------

    def call(self, what: str, fn: Callable[[], T], *, missing_ok: bool = False) -> T | None:
        """One request; with `missing_ok`, "not found" (of the resource or a parent) is None."""
        try:
            return fn()
        except HttpResponseError as exc:
            if missing_ok and exc.status_code == 404:
                return None
            raise translate(exc, what) from exc
        except GoldenImageError:
            raise
        except Exception as exc:
            raise translate(exc, what) from exc

    def run(self, what: str, start: Callable[[], LROPoller[Any]], *, missing_ok: bool = False) -> Any:
        """A long-running operation, started and waited for."""

        def done() -> Any:
            poller = start()
            result = poller.result(timeout=OPERATION_TIMEOUT)
            if not poller.done():
                raise CloudError(f"{what}: not finished within {OPERATION_TIMEOUT:.0f}s")
            return result

        return self.call(what, done, missing_ok=missing_ok)

    def listed(self, what: str, fn: Callable[[], Iterable[T]], *, missing_ok: bool = False) -> list[T]:
        found = self.call(what, lambda: list(fn()), missing_ok=missing_ok)
        return found or []

    # -- subscriptions ---------------------------------------------------------------------

    def subscriptions(self) -> list[str]:
        """The subscriptions the credentials can see (GET /subscriptions, which needs no
        subscription to ask in)."""
        with self._lock:
            if self._pipeline is None:
                self._pipeline = ARMPipelineClient(
                    base_url=MANAGEMENT,
                    policies=[
                        HeadersPolicy(),
                        UserAgentPolicy(sdk_moniker="goldenimage-operator"),
                        RetryPolicy(retry_total=RETRIES),
                        ARMChallengeAuthenticationPolicy(self._credentials.get(), SCOPE),
                    ],
                )
            pipeline = self._pipeline

        def pages() -> list[str]:
            out: list[str] = []
            url: str | None = f"{MANAGEMENT}/subscriptions?api-version={SUBSCRIPTIONS_API}"
            while url:
                response = pipeline.send_request(HttpRequest("GET", url), timeout=CALL_TIMEOUT)
                response.raise_for_status()
                body = response.json()
                out += [
                    str(s["subscriptionId"]) for s in body.get("value", []) if s.get("state", "Enabled") != "Disabled"
                ]
                url = body.get("nextLink")
            return out

        return self.call("listing the subscriptions the Azure credentials can see", pages) or []

    # -- tags --------------------------------------------------------------------------------

    def tags(self, subscription: str, resource_id: str) -> dict[str, str] | None:
        """A resource's tags (any type: the Tags API needs no API version of the resource's
        provider); None when it does not exist."""
        client = self.resources(subscription)
        found = self.call(
            f"reading the tags of {resource_id}", lambda: client.tags.get_at_scope(resource_id), missing_ok=True
        )
        if found is None:
            return None
        return dict(found.properties.tags or {})

    def change_tags(self, subscription: str, resource_id: str, operation: str, tags: Mapping[str, str]) -> None:
        """Merge or Delete (the given keys with their values) without touching other tags, so that
        two writers of different tags never undo each other."""
        client = self.resources(subscription)
        body = {"operation": operation, "properties": {"tags": dict(tags)}}
        self.run(
            f"{operation.lower()} of tags {sorted(tags)} on {resource_id}",
            lambda: client.tags.begin_update_at_scope(resource_id, body),
        )

    def by_tag(self, subscription: str, key: str, value: str) -> tuple[list[Any], list[Any]]:
        """(resource groups, resources) carrying the tag. ARM answers a tag filter without the
        resources' tags (the groups keep theirs)."""
        client = self.resources(subscription)
        wanted = f"tagName eq '{_quote(key)}' and tagValue eq '{_quote(value)}'"
        groups = self.listed(
            f"listing resource groups tagged {key}={value} in {subscription}",
            lambda: client.resource_groups.list(filter=wanted),
        )
        resources = self.listed(
            f"listing resources tagged {key}={value} in {subscription}", lambda: client.resources.list(filter=wanted)
        )
        return groups, resources


def _quote(text: str) -> str:
    """A string inside an OData literal."""
    return text.replace("'", "''")
