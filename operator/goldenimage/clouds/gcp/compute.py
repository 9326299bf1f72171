"""Compute Engine calls as the adapter and the publisher make them: credentials, clients,
waiting for operations, and what the API's answers mean to the operator.

Errors: throttling, outages and anything that may pass are CloudError (retried later); a
permission the credentials lack, a quota, credentials that are refused and a project or zone that
does not exist are CloudRefusedError (a condition says what to change); "not found" is returned
as None where a caller asks for it.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import threading
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any, Literal, TypeVar

import google.auth
from google.api_core import exceptions
from google.auth import credentials as auth_credentials
from google.auth import exceptions as auth_exceptions
from google.cloud import compute_v1
from google.oauth2 import service_account

from ...api.errors import CloudError, CloudRefusedError, GoldenImageError
from .kind import CREDENTIALS_ENV

SCOPES = ["https://www.googleapis.com/auth/cloud-platform"]
CALL_TIMEOUT = 60.0
# Copying an image takes minutes on GCE; everything else a few seconds to a minute.
OPERATION_TIMEOUT = 900.0
LABEL_RETRIES = 5

_RATE_LIMITS = {"rateLimitExceeded", "userRateLimitExceeded", "RATE_LIMIT_EXCEEDED"}
_QUOTAS = {"QUOTA_EXCEEDED", "quotaExceeded", "ZONE_RESOURCE_POOL_EXHAUSTED"}
_BUSY = {
    "resourceNotReady",
    "resourceInUseByAnotherResource",
    "RESOURCE_NOT_READY",
    "RESOURCE_IN_USE_BY_ANOTHER_RESOURCE",
}

T = TypeVar("T")


class StaleError(CloudError):
    """A fingerprint no longer matches (someone changed the resource meanwhile): read again."""


class ExistsError(CloudError):
    """The resource to create exists already."""


def reasons(exc: exceptions.GoogleAPICallError) -> set[str]:
    """The machine-readable reasons of an error: those of an HTTP error body (`reason`) and of a
    failed operation (`code`)."""
    found: set[str] = set()
    for error in exc.errors or []:
        if isinstance(error, Mapping):
            found.add(str(error.get("reason") or error.get("code") or ""))
        else:
            found.add(str(getattr(error, "reason", "") or getattr(error, "code", "")))
    if getattr(exc, "reason", None):
        found.add(str(exc.reason))
    return found - {""}


def translate(exc: BaseException, what: str) -> GoldenImageError:
    """The operator's error for a failed call."""
    if isinstance(exc, exceptions.GoogleAPICallError):
        why = reasons(exc)
        message = f"{what}: {exc.message or exc}"
        if isinstance(exc, exceptions.PreconditionFailed):
            return StaleError(message)
        if isinstance(exc, exceptions.Conflict):
            return ExistsError(message)
        if why & _RATE_LIMITS or isinstance(exc, exceptions.TooManyRequests | exceptions.ServerError):
            return CloudError(message)
        if why & _QUOTAS:
            return CloudRefusedError(f"{message} (a quota is exhausted: free resources or raise the quota)")
        if isinstance(exc, exceptions.Forbidden):
            return CloudRefusedError(f"{message} (the credentials lack this permission)")
        if isinstance(exc, exceptions.Unauthorized):
            return CloudRefusedError(f"{message} (the credentials were refused)")
        if isinstance(exc, exceptions.NotFound):
            return CloudRefusedError(f"{message} (does the project, zone or resource exist?)")
        if isinstance(exc, exceptions.BadRequest) and not why & _BUSY:
            return CloudRefusedError(message)
        return CloudError(message)
    if isinstance(exc, auth_exceptions.DefaultCredentialsError):
        return CloudRefusedError(
            f"{what}: no Google credentials: name a Secret with {CREDENTIALS_ENV} in credentials.gcp.secretRef, "
            f"or give the operator Application Default Credentials ({exc})"
        )
    if isinstance(exc, auth_exceptions.RefreshError) and not getattr(exc, "retryable", False):
        return CloudRefusedError(f"{what}: the credentials were refused: {exc}")
    if isinstance(exc, auth_exceptions.GoogleAuthError | OSError | exceptions.RetryError):
        return CloudError(f"{what}: {exc}")
    if isinstance(exc, concurrent.futures.TimeoutError):
        return CloudError(f"{what}: not finished in time")
    return CloudError(f"{what}: {type(exc).__name__}: {exc}")


def label_filter(labels: Mapping[str, str]) -> str:
    """A list filter matching every label (values are label values, which need no escaping)."""
    return " AND ".join(f'(labels.{k} = "{v}")' for k, v in sorted(labels.items()))


def created(resource: Any) -> datetime:
    """A resource's creationTimestamp as a time (GCE writes local offsets, so text does not sort)."""
    return datetime.fromisoformat(str(resource.creation_timestamp))


def deprecation(image: compute_v1.Image) -> str:
    """ACTIVE, DEPRECATED, OBSOLETE or DELETED."""
    return str(image.deprecated.state) if "deprecated" in image and image.deprecated.state else "ACTIVE"


def service_account_key(text: str, where: str) -> tuple[auth_credentials.Credentials, str | None]:
    """(credentials, project) of a service-account key's JSON document.

    Only that type, the one Packer's `account_file` takes too: other credential documents (external
    accounts, impersonation) make the loader read files and call URLs the document names, which a
    tenant's Secret must not be able to point at the operator's own files and network. Identities
    other than a key come from Application Default Credentials (Workload Identity), which the
    operator's and the Jobs' deployments control. Messages never quote the document."""
    try:
        info = json.loads(text)
    except ValueError as exc:
        raise CloudRefusedError(f"{where} is not a JSON document ({type(exc).__name__})") from None
    kind = info.get("type") if isinstance(info, dict) else None
    if kind != "service_account":
        raise CloudRefusedError(
            f"{where} is not a service-account key (its type is {kind!r}); other identities come from "
            "Application Default Credentials"
        )
    try:
        loaded = service_account.Credentials.from_service_account_info(info, scopes=SCOPES)  # type: ignore[no-untyped-call]
    except (ValueError, KeyError) as exc:
        raise CloudRefusedError(f"{where} is not a usable service-account key: missing or invalid {exc}") from None
    project = info.get("project_id")
    return loaded, str(project) if project else None


class Compute:
    """Clients of one set of credentials: a service-account key (the Secret's GOOGLE_CREDENTIALS,
    or the process's own GOOGLE_CREDENTIALS, as a build or validation Job has it from that
    Secret), else Application Default Credentials. Nothing is loaded before the first call."""

    def __init__(self, credentials: Mapping[str, str] | None = None) -> None:
        self._given = dict(credentials or {})
        self._lock = threading.Lock()
        self._loaded: tuple[auth_credentials.Credentials, str | None] | None = None
        self._clients: dict[str, Any] = {}

    # -- credentials and clients -----------------------------------------------------------

    def _load(self) -> tuple[auth_credentials.Credentials, str | None]:
        if self._given:
            # A Secret was named: its key or nothing. Falling back to the process's own identity
            # would act in another project, where everything of this recipe looks missing.
            text = self._given.get(CREDENTIALS_ENV, "")
            if not text.strip():
                keys = ", ".join(sorted(self._given)) or "none"
                raise CloudRefusedError(f"the credentials Secret has no {CREDENTIALS_ENV} key (its keys: {keys})")
            return service_account_key(text, f"the credentials Secret's {CREDENTIALS_ENV}")
        text = os.environ.get(CREDENTIALS_ENV, "")
        if text.strip():
            return service_account_key(text, f"${CREDENTIALS_ENV}")
        found, project = google.auth.default(scopes=SCOPES)
        return found, project

    def credentials(self) -> tuple[auth_credentials.Credentials, str | None]:
        """(credentials, their project) — loaded once."""
        with self._lock:
            if self._loaded is None:
                try:
                    self._loaded = self._load()
                except GoldenImageError:
                    raise
                except (auth_exceptions.GoogleAuthError, OSError, ValueError) as exc:
                    raise translate(exc, "loading Google credentials") from None
            return self._loaded

    def default_project(self) -> str | None:
        return self.credentials()[1]

    def client(self, kind: Literal["images", "instances", "disks", "zones"]) -> Any:
        found, _ = self.credentials()
        with self._lock:
            if kind not in self._clients:
                make = {
                    "images": compute_v1.ImagesClient,
                    "instances": compute_v1.InstancesClient,
                    "disks": compute_v1.DisksClient,
                    "zones": compute_v1.ZonesClient,
                }[kind]
                self._clients[kind] = make(credentials=found)
            return self._clients[kind]

    @property
    def images_client(self) -> compute_v1.ImagesClient:
        return self.client("images")  # type: ignore[no-any-return]

    @property
    def instances_client(self) -> compute_v1.InstancesClient:
        return self.client("instances")  # type: ignore[no-any-return]

    @property
    def disks_client(self) -> compute_v1.DisksClient:
        return self.client("disks")  # type: ignore[no-any-return]

    # -- calls -----------------------------------------------------------------------------

    def call(self, what: str, fn: Callable[[], T], *, missing_ok: bool = False) -> T | None:
        """One call; "not found" is None when `missing_ok`."""
        try:
            return fn()
        except exceptions.NotFound as exc:
            if missing_ok:
                return None
            raise translate(exc, what) from exc
        except GoldenImageError:
            raise
        except Exception as exc:
            raise translate(exc, what) from exc

    def run(
        self, what: str, fn: Callable[[], Any], *, missing_ok: bool = False, timeout: float = OPERATION_TIMEOUT
    ) -> bool:
        """A call that starts an operation, and the wait for it; False when the resource was not
        found (with `missing_ok`)."""

        def started() -> bool:
            fn().result(timeout=timeout)
            return True

        return bool(self.call(what, started, missing_ok=missing_ok))

    def listed(self, what: str, fn: Callable[[], Iterable[T]], *, missing_ok: bool = False) -> list[T]:
        """Every item of a paginated list (the pager fetches the pages)."""
        return self.call(what, lambda: list(fn()), missing_ok=missing_ok) or []

    def zone_exists(self, project: str, zone: str) -> bool:
        client = self.client("zones")
        found = self.call(
            f"reading zone {zone} of project {project}",
            lambda: client.get(project=project, zone=zone, timeout=CALL_TIMEOUT),
            missing_ok=True,
        )
        return found is not None

    # -- images ----------------------------------------------------------------------------

    def image(self, project: str, name: str) -> compute_v1.Image | None:
        client = self.images_client
        return self.call(
            f"getting image {name} in {project}",
            lambda: client.get(project=project, image=name, timeout=CALL_TIMEOUT),
            missing_ok=True,
        )

    def images(self, project: str, filter: str) -> list[compute_v1.Image]:
        client = self.images_client
        request = compute_v1.ListImagesRequest(project=project, filter=filter)
        return self.listed(f"listing images in {project}", lambda: client.list(request=request, timeout=CALL_TIMEOUT))

    def relabel(self, project: str, name: str, change: Callable[[dict[str, str]], dict[str, str]]) -> bool:
        """Apply `change` to an image's labels, conditional on their fingerprint (re-read and
        retried when someone else changed them meanwhile). False when nothing changed or the
        image is gone."""
        client = self.images_client
        for _ in range(LABEL_RETRIES):
            image = self.image(project, name)
            if image is None:
                return False
            old = dict(image.labels)
            new = change(dict(old))
            if new == old:
                return False
            body = compute_v1.GlobalSetLabelsRequest(labels=new, label_fingerprint=image.label_fingerprint)
            try:
                return self.run(
                    f"labelling image {name} in {project}",
                    lambda body=body: client.set_labels(  # type: ignore[misc]
                        project=project, resource=name, global_set_labels_request_resource=body, timeout=CALL_TIMEOUT
                    ),
                    missing_ok=True,
                )
            except StaleError:
                continue
        raise CloudError(f"the labels of image {name} in {project} kept changing")

    def set_deprecation(self, project: str, name: str, state: str, replacement: str | None = None) -> bool:
        client = self.images_client
        status = compute_v1.DeprecationStatus(state=state)
        if replacement:
            status.replacement = replacement
        return self.run(
            f"setting image {name} in {project} {state}",
            lambda: client.deprecate(
                project=project, image=name, deprecation_status_resource=status, timeout=CALL_TIMEOUT
            ),
            missing_ok=True,
        )

    def delete_image(self, project: str, name: str) -> bool:
        client = self.images_client
        return self.run(
            f"deleting image {name} in {project}",
            lambda: client.delete(project=project, image=name, timeout=CALL_TIMEOUT),
            missing_ok=True,
        )

    def insert_image(self, project: str, image: compute_v1.Image) -> None:
        client = self.images_client
        self.run(
            f"creating image {image.name} in {project}",
            lambda: client.insert(project=project, image_resource=image, timeout=CALL_TIMEOUT),
        )

    # -- instances and disks ---------------------------------------------------------------

    def aggregated(self, kind: Literal["instances", "disks"], project: str, filter: str) -> list[tuple[str, Any]]:
        """(zone, resource) of every instance or disk of the project that matches."""
        client = self.instances_client if kind == "instances" else self.disks_client
        request_type = (
            compute_v1.AggregatedListInstancesRequest if kind == "instances" else compute_v1.AggregatedListDisksRequest
        )
        request = request_type(project=project, filter=filter)
        pairs = self.listed(
            f"listing {kind} in {project}", lambda: client.aggregated_list(request=request, timeout=CALL_TIMEOUT)
        )
        return [
            (scope.removeprefix("zones/"), item)
            for scope, scoped in pairs
            if scope.startswith("zones/")
            for item in getattr(scoped, kind)
        ]

    def delete_instance(self, project: str, zone: str, name: str) -> bool:
        client = self.instances_client
        return self.run(
            f"deleting instance {name} in {project}/{zone}",
            lambda: client.delete(project=project, zone=zone, instance=name, timeout=CALL_TIMEOUT),
            missing_ok=True,
        )

    def delete_disk(self, project: str, zone: str, name: str) -> bool:
        client = self.disks_client
        return self.run(
            f"deleting disk {name} in {project}/{zone}",
            lambda: client.delete(project=project, zone=zone, disk=name, timeout=CALL_TIMEOUT),
            missing_ok=True,
        )
