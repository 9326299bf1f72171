"""What the fake holds: subscriptions, resources (resource groups included) keyed by their
lower-cased ID, marketplace images, authorization denials and settings. Every access goes
through one re-entrant lock; slow machine work runs outside it."""

from __future__ import annotations

import fnmatch
import threading
from dataclasses import dataclass, field
from typing import Any, Literal

from . import errors, regions
from .ids import ResourceId

Json = dict[str, Any]


@dataclass
class Settings:
    """What a test chooses about the fake's behaviour; may change at any time."""

    lro: Literal["sync", "async"] = "sync"  # long-running operations: 200/201 at once, or 201/202 + polling
    async_polls: int = 1  # "InProgress" answers an async operation gives before its result
    replication_seconds: float = 0.0  # how long a gallery image version takes to reach each region
    public_address: str | None = None  # what public IPs report instead of the machine's address


@dataclass
class Subscription:
    id: str
    tenant: str
    display_name: str
    locations: tuple[str, ...] = regions.DEFAULT_LOCATIONS
    core_quota: dict[str, int] = field(default_factory=dict)  # location -> total regional cores

    def body(self) -> Json:
        return {
            "id": f"/subscriptions/{self.id}",
            "subscriptionId": self.id,
            "tenantId": self.tenant,
            "displayName": self.display_name,
            "state": "Enabled",
            "subscriptionPolicies": {"locationPlacementId": "Public_2014-09-01", "quotaId": "PayAsYouGo_2014-09-01"},
            "authorizationSource": "RoleBased",
        }


@dataclass
class Resource:
    rid: ResourceId
    body: Json  # as GET returns it, before the computed fields a kind adds
    extra: Json = field(default_factory=dict)  # the fake's own bookkeeping, never sent

    @property
    def id(self) -> str:
        return str(self.rid)

    @property
    def properties(self) -> Json:
        props: Json = self.body.setdefault("properties", {})
        return props


@dataclass(frozen=True)
class Denial:
    principal: str  # a client (application) id or an object id
    action: str  # e.g. Microsoft.Compute/virtualMachines/write; fnmatch patterns allowed
    scope: str  # a resource id prefix; "/" for everything

    def matches(self, client_id: str, object_id: str, action: str, scope: str) -> bool:
        if self.principal.lower() not in (client_id.lower(), object_id.lower()):
            return False
        if not fnmatch.fnmatchcase(action.lower(), self.action.lower()):
            return False
        prefix = self.scope.rstrip("/").lower()
        return not prefix or scope.lower() == prefix or scope.lower().startswith(prefix + "/")


@dataclass
class MarketplaceImage:
    publisher: str
    offer: str
    sku: str
    versions: list[str]
    locations: tuple[str, ...] | None  # None: every location
    hyper_v_generation: str = "V1"


class State:
    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.settings = Settings()
        self.subscriptions: dict[str, Subscription] = {}
        self.resources: dict[str, Resource] = {}
        self.marketplace: list[MarketplaceImage] = []
        self.denials: list[Denial] = []

    def subscription(self, subscription_id: str) -> Subscription:
        found = self.subscriptions.get(subscription_id.lower())
        if found is None:
            raise errors.subscription_not_found(subscription_id)
        return found

    def get(self, rid: ResourceId) -> Resource | None:
        return self.resources.get(rid.key)

    def group(self, rid: ResourceId) -> Resource:
        """The resource group of `rid`, or ResourceGroupNotFound."""
        self.subscription(rid.subscription)
        assert rid.group is not None
        found = self.resources.get(rid.group_id.key)
        if found is None:
            raise errors.group_not_found(rid.group)
        return found

    def require(self, rid: ResourceId) -> Resource:
        """The resource, or the error ARM gives for the first missing level."""
        if rid.group is not None:
            self.group(rid)
        else:
            self.subscription(rid.subscription)
        parent = rid.parent
        if parent is not None:
            self.require(parent)
        found = self.get(rid)
        if found is None:
            raise errors.not_found(rid)
        return found

    def add(self, resource: Resource) -> None:
        self.resources[resource.rid.key] = resource

    def remove(self, rid: ResourceId) -> None:
        self.resources.pop(rid.key, None)

    def children(self, rid: ResourceId, type_segment: str) -> list[Resource]:
        """Direct children of `rid` of one type (the versions of a gallery image)."""
        child_type = f"{rid.type}/{type_segment}".lower()
        prefix = rid.key + "/"
        return [r for k, r in self.resources.items() if k.startswith(prefix) and r.rid.type.lower() == child_type]

    def in_group(self, group: ResourceId) -> list[Resource]:
        prefix = group.key + "/"
        return [r for k, r in self.resources.items() if k.startswith(prefix)]

    def of_type(self, full_type: str, subscription: str | None = None) -> list[Resource]:
        return [
            r
            for r in self.resources.values()
            if r.rid.type.lower() == full_type.lower()
            and (subscription is None or r.rid.subscription.lower() == subscription.lower())
        ]

    def find(self, resource_id: str) -> Resource | None:
        """A resource by an ID string as a request body spells it (any case), or None."""
        try:
            return self.get(ResourceId.parse(resource_id))
        except ValueError:
            return None
