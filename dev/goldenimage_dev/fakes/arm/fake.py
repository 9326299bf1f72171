"""The fake itself: state, machines, tokens and operations behind two WSGI apps, with the seeding
and inspection tests use from Python."""

from __future__ import annotations

import copy
import threading
import uuid
from collections.abc import Iterable
from typing import Any
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

from werkzeug.wrappers import Request

from ..hypervisor import Hypervisor, Recorder
from . import compute, network, regions, resources  # noqa: F401  (each registers its kinds)
from .errors import authorization_failed
from .ids import ResourceId
from .kinds import Change, kind_for
from .machines import Machines
from .operations import Operations
from .routing import Management
from .state import Denial, Json, MarketplaceImage, Resource, Settings, State, Subscription
from .tokens import Caller, Principal, Tokens

MANAGEMENT_HOST = "management.azure.com"
LOGIN_HOST = "login.microsoftonline.com"


class Arm:
    """A stateful fake of Azure Resource Manager and Microsoft Entra ID tokens.

    Serve `routes` through the TLS edge; seed subscriptions, service principals, resource groups,
    galleries and marketplace images from Python; choose synchronous or asynchronous operations
    and replication times in `settings`; read everything back with `snapshot()` (also served as
    `GET https://management.azure.com/_fake/state`).
    """

    def __init__(self, hypervisor: Hypervisor | None = None, *, public_address: str | None = None) -> None:
        self.state = State()
        self.state.settings.public_address = public_address
        self.machines = Machines(hypervisor if hypervisor is not None else Recorder())
        self.tokens = Tokens()
        self.operations = Operations()
        self.management = Management(self)
        self.events: list[tuple[str, str]] = []  # machine work done: ("boot", vm id), ("generalize", vm id), ...
        self.requests: list[dict[str, Any]] = []
        self._log_lock = threading.Lock()

    @property
    def settings(self) -> Settings:
        return self.state.settings

    @property
    def routes(self) -> dict[str, WSGIApplication]:
        """The WSGI app for each host name, as the TLS edge takes them."""
        return {MANAGEMENT_HOST: self.management, LOGIN_HOST: self.login}

    def login(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        request = Request(environ)
        response = self.tokens.dispatch(request)
        self.log_request(request, response.status_code, None)
        return response(environ, start_response)

    def close(self, timeout: float = 60) -> None:
        """Wait for running operations' work, then stop the worker threads."""
        self.operations.wait(timeout)
        self.operations.close()

    # --- seeding ---

    def add_subscription(
        self,
        subscription_id: str,
        tenant: str,
        *,
        display_name: str | None = None,
        locations: Iterable[str] | None = None,
    ) -> Subscription:
        subscription = Subscription(
            subscription_id,
            tenant,
            display_name or f"Subscription {subscription_id}",
            tuple(regions.normalize(x) for x in locations) if locations is not None else regions.DEFAULT_LOCATIONS,
        )
        with self.state.lock:
            self.state.subscriptions[subscription_id.lower()] = subscription
        self.tokens.tenants.add(tenant.lower())
        return subscription

    def add_principal(
        self,
        tenant: str,
        client_id: str,
        *,
        secret: str | None = None,
        object_id: str | None = None,
        federated: Iterable[tuple[str, str]] = (),
    ) -> Principal:
        """A service principal that may get tokens with `secret`, or with a client assertion
        (workload identity) whose issuer and subject are one of `federated`."""
        return self.tokens.add(Principal(tenant, client_id, object_id or str(uuid.uuid4()), secret, tuple(federated)))

    def add_resource_group(
        self, subscription: str, name: str, location: str, tags: dict[str, str] | None = None
    ) -> Json:
        return self._seed(ResourceId(subscription, name), {"location": location, "tags": tags or {}})

    def add_gallery(
        self, subscription: str, group: str, name: str, location: str, tags: dict[str, str] | None = None
    ) -> Json:
        rid = ResourceId.of(subscription, group, compute.GALLERY, name)
        return self._seed(rid, {"location": location, "tags": tags or {}, "properties": {"description": name}})

    def add_gallery_image(
        self,
        subscription: str,
        group: str,
        gallery: str,
        name: str,
        location: str,
        *,
        publisher: str,
        offer: str,
        sku: str,
        os_type: str = "Linux",
        os_state: str = "Generalized",
        hyper_v_generation: str = "V1",
        features: dict[str, str] | None = None,
        regions_allowed: Iterable[str] | None = None,
        tags: dict[str, str] | None = None,
    ) -> Json:
        """An image definition; `regions_allowed` limits where its versions may replicate (a
        fake-only policy, answered with InvalidParameter as Azure does for a region it refuses)."""
        rid = ResourceId.of(subscription, group, compute.GALLERY_IMAGE, gallery, name)
        props: Json = {
            "osType": os_type,
            "osState": os_state,
            "hyperVGeneration": hyper_v_generation,
            "identifier": {"publisher": publisher, "offer": offer, "sku": sku},
        }
        if features:
            props["features"] = [{"name": k, "value": v} for k, v in features.items()]
        body = self._seed(rid, {"location": location, "tags": tags or {}, "properties": props})
        if regions_allowed is not None:
            with self.state.lock:
                resource = self.state.get(rid)
                assert resource is not None
                resource.extra["allowed_regions"] = [regions.normalize(r) for r in regions_allowed]
        return body

    def add_marketplace_image(
        self,
        publisher: str,
        offer: str,
        sku: str,
        versions: Iterable[str],
        *,
        locations: Iterable[str] | None = None,
        hyper_v_generation: str = "V1",
    ) -> None:
        """A Marketplace image, or new versions of one already seeded in the same locations (a
        publisher releasing a version: lookups find the first matching image only)."""
        where = tuple(regions.normalize(x) for x in locations) if locations is not None else None
        with self.state.lock:
            for seeded in self.state.marketplace:
                same = (seeded.publisher, seeded.offer, seeded.sku) == (publisher, offer, sku)
                if same and seeded.locations == where:
                    seeded.versions += [v for v in versions if v not in seeded.versions]
                    return
            self.state.marketplace.append(
                MarketplaceImage(publisher, offer, sku, list(versions), where, hyper_v_generation)
            )

    def deny(self, principal: str, action: str, scope: str = "/") -> None:
        """Refuse `action` (fnmatch patterns allowed) to a client or object id below `scope`."""
        with self.state.lock:
            self.state.denials.append(Denial(principal, action, scope))

    def set_core_quota(self, subscription: str, location: str, cores: int) -> None:
        with self.state.lock:
            self.state.subscription(subscription).core_quota[regions.normalize(location)] = cores

    def _seed(self, rid: ResourceId, body: Json) -> Json:
        with self.state.lock:
            if not rid.is_group:
                self.state.group(rid)
                if rid.parent is not None:
                    self.state.require(rid.parent)
            resource, change = self.apply_put(rid, body)
        change.run()
        return self.render(resource)

    # --- inspection ---

    def render(self, resource: Resource) -> Json:
        """A resource as GET returns it, with the details only an $expand shows."""
        kind = kind_for(resource.rid.type)
        expand = {
            compute.VM.lower(): "instanceView",
            compute.GALLERY_VERSION.lower(): "ReplicationStatus",
        }.get(resource.rid.type.lower(), "")
        with self.state.lock:
            return kind.render(self, resource, {"$expand": expand} if expand else {})

    def resource(self, resource_id: str) -> Json | None:
        with self.state.lock:
            found = self.state.find(resource_id)
            return self.render(found) if found is not None else None

    def resources(self, full_type: str | None = None) -> list[Json]:
        """Every resource (resource groups included), or every one of a type, as GET shows it."""
        with self.state.lock:
            found = [
                r for r in self.state.resources.values() if full_type is None or r.rid.type.lower() == full_type.lower()
            ]
            return [self.render(r) for r in sorted(found, key=lambda r: r.rid.key)]

    def snapshot(self) -> Json:
        """Everything, JSON-serializable: what `GET /_fake/state` returns."""
        with self.state.lock:
            out: Json = {
                "subscriptions": [s.body() for s in self.state.subscriptions.values()],
                "resources": [],
                "marketplace": [copy.deepcopy(vars(m)) for m in self.state.marketplace],
                "settings": dict(vars(self.state.settings)),
            }
            for resource in sorted(self.state.resources.values(), key=lambda r: r.rid.key):
                body = self.render(resource)
                body["_fake"] = {
                    k: v for k, v in resource.extra.items() if isinstance(v, str | int | float | bool | list)
                }
                out["resources"].append(body)
        with self._log_lock:
            out["events"] = [list(e) for e in self.events]
            out["requests"] = list(self.requests)
        return out

    # --- what the routes and kinds share ---

    def tenant_of(self, subscription: str) -> str | None:
        found = self.state.subscriptions.get(subscription.lower())
        return found.tenant if found else None

    def authorize(self, caller: Caller, action: str, scope: str) -> None:
        with self.state.lock:
            denied = any(d.matches(caller.client_id, caller.object_id, action, scope) for d in self.state.denials)
        if denied:
            raise authorization_failed(caller.client_id, caller.object_id, action, scope)

    def apply_put(self, rid: ResourceId, body: Json) -> tuple[Resource, Change]:
        """Create or replace a resource (from a request or a deployment); returns its slow part."""
        with self.state.lock:
            existing = self.state.get(rid)
            change = kind_for(rid.type).create(self, rid, body, existing)
            resource = self.state.get(rid)
            assert resource is not None
            return resource, change

    def apply_delete(self, rid: ResourceId, *, cascade: bool) -> Change:
        with self.state.lock:
            resource = self.state.get(rid)
            if resource is None:
                return Change()
            return kind_for(rid.type).delete(self, resource, cascade=cascade)

    def record(self, event: str, subject: str) -> None:
        with self._log_lock:
            self.events.append((event, subject))

    def log_request(self, request: Request, status: int, caller: Caller | None) -> None:
        with self._log_lock:
            self.requests.append(
                {
                    "method": request.method,
                    "host": request.host,
                    "path": request.path,
                    "query": dict(request.args),
                    "status": status,
                    "client": caller.client_id if caller else None,
                }
            )
