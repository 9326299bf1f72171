"""Resource kinds: what a PUT, PATCH, DELETE, POST action or GET does to one resource type.

The generic kind stores what it is given (any type a template or an SDK sends, such as network
security groups); the kinds of compute.py, network.py and resources.py add each type's rules,
computed fields and machine work. A kind changes the state at once, under the state's lock, and
returns the slow part as `Change.work`, which runs inline for synchronous operations and on the
operations' pool for asynchronous ones.
"""

from __future__ import annotations

import copy
import datetime
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from . import errors, regions
from .ids import ResourceId
from .machines import Machines
from .state import Json, Resource, State


class Context(Protocol):
    """What kinds need of the fake."""

    state: State
    machines: Machines

    def record(self, event: str, subject: str) -> None: ...

    def apply_put(self, rid: ResourceId, body: Json) -> tuple[Resource, Change]: ...

    def apply_delete(self, rid: ResourceId, *, cascade: bool) -> Change: ...


@dataclass
class Change:
    """The slow part of a request, and what else its operation waits for."""

    work: Callable[[], None] | None = None
    ready: Callable[[], bool] | None = None  # e.g. replication complete
    result: Callable[[], Json | None] | None = None  # the body an action's operation ends with
    failure_in_body: bool = False  # a failed deployment is reported in its body, not as an error

    def run(self) -> None:
        if self.work is not None:
            self.work()


def timestamp() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f0Z")


def merge(base: Json, patch: Mapping[str, Any]) -> Json:
    """A PATCH body merged into a resource: objects merge, everything else replaces."""
    out = copy.deepcopy(base)
    for key, value in patch.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def properties(body: Mapping[str, Any]) -> Json:
    props = body.get("properties")
    return dict(props) if isinstance(props, Mapping) else {}


def tags_of(body: Mapping[str, Any]) -> dict[str, str]:
    tags = body.get("tags")
    if tags is None:
        return {}
    if not isinstance(tags, Mapping) or not all(isinstance(v, str) for v in tags.values()):
        raise errors.bad_request("InvalidTag", "Tags must be an object of string values.")
    return dict(tags)


_COPIED = ("sku", "kind", "zones", "identity", "plan", "managedBy", "extendedLocation")


class Kind:
    type: ClassVar[str] = ""
    tracked: ClassVar[bool] = True  # has a location and tags; listed with resources
    put_async: ClassVar[bool] = True  # a PUT or PATCH may answer asynchronously (a resource group's never does)
    delete_async: ClassVar[bool] = True
    sync_actions: ClassVar[frozenset[str]] = frozenset()  # POST actions that always answer at once
    actions_without_resource: ClassVar[frozenset[str]] = frozenset()  # e.g. a deployment's `validate`

    def location(self, ctx: Context, rid: ResourceId, body: Mapping[str, Any], existing: Resource | None) -> str:
        """The resource's location, checked: required, known to the subscription, never moved."""
        given = body.get("location")
        if not isinstance(given, str) or not given:
            if existing is not None:
                return str(existing.body["location"])
            raise errors.bad_request("LocationRequired", "The location property is required for this definition.")
        location = regions.normalize(given)
        subscription = ctx.state.subscription(rid.subscription)
        if location not in subscription.locations:
            raise errors.bad_request(
                "LocationNotAvailableForResourceType",
                f"The provided location '{given}' is not available for resource type '{rid.type}'. List of "
                f"available regions for the resource type is '{','.join(subscription.locations)}'.",
            )
        if existing is not None and existing.body.get("location") != location:
            raise errors.bad_request(
                "InvalidResourceLocation",
                f"The resource '{rid.name}' already exists in location '{existing.body.get('location')}' in resource "
                f"group '{rid.group}'. A resource with the same name cannot be created in location '{location}'. "
                "Please select a new resource name.",
            )
        return location

    def build(self, ctx: Context, rid: ResourceId, body: Mapping[str, Any], existing: Resource | None) -> Resource:
        """The stored form of a PUT body: identity, location, tags, a copy of its properties."""
        out: Json = {"id": str(rid), "name": rid.name, "type": rid.type}
        if self.tracked:
            out["location"] = self.location(ctx, rid, body, existing)
            out["tags"] = tags_of(body)
        for key in _COPIED:
            if key in body:
                out[key] = copy.deepcopy(body[key])
        out["properties"] = copy.deepcopy(properties(body))
        out["properties"]["provisioningState"] = "Succeeded"
        extra = dict(existing.extra) if existing is not None else {"created": timestamp()}
        return Resource(rid, out, extra)

    def create(self, ctx: Context, rid: ResourceId, body: Json, existing: Resource | None) -> Change:
        ctx.state.add(self.build(ctx, rid, body, existing))
        return Change()

    def update(self, ctx: Context, resource: Resource, patch: Json) -> Change:
        """PATCH: tags replace, properties merge."""
        if "tags" in patch:
            resource.body["tags"] = tags_of(patch)
        if "properties" in patch:
            resource.body["properties"] = merge(resource.properties, properties(patch))
        for key in _COPIED:
            if key in patch:
                resource.body[key] = copy.deepcopy(patch[key])
        return Change()

    def writes(self, ctx: Context, rid: ResourceId, body: Json) -> list[tuple[str, str]]:
        """The (action, scope) pairs a PUT of `body` needs the caller to be allowed."""
        return [(f"{rid.action_type}/write", str(rid))]

    def delete(self, ctx: Context, resource: Resource, *, cascade: bool) -> Change:
        """Remove the resource; `cascade` (its resource group goes) skips the in-use checks."""
        ctx.state.remove(resource.rid)
        return Change()

    def render(self, ctx: Context, resource: Resource, query: Mapping[str, str]) -> Json:
        return copy.deepcopy(resource.body)

    def action(self, ctx: Context, rid: ResourceId, name: str, body: Json) -> Change:
        raise errors.unsupported(f"The action '{name}' on {self.type or rid.type}")

    def view(self, ctx: Context, resource: Resource, path: list[str], query: Mapping[str, str]) -> Json | None:
        """A GET below the resource (instanceView, a deployment's operations); None: not a view
        but a list of child resources."""
        return None


REGISTRY: dict[str, Kind] = {}
GENERIC = Kind()


def register(kind: Kind) -> Kind:
    REGISTRY[kind.type.lower()] = kind
    return kind


def kind_for(full_type: str) -> Kind:
    return REGISTRY.get(full_type.lower(), GENERIC)
