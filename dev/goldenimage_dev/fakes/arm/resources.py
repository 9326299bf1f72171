"""Microsoft.Resources: resource groups (their deletion takes everything in them along),
template deployments with their operations, tags at a scope, and resource lists filtered as
`$filter=tagName eq 'k' and tagValue eq 'v'`."""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from . import errors, templates
from .ids import ResourceId
from .kinds import Change, Context, Kind, kind_for, properties, register, tags_of, timestamp
from .state import Json, Resource

GROUP = "Microsoft.Resources/resourceGroups"
DEPLOYMENT = "Microsoft.Resources/deployments"

# The order a resource group's contents go in: users before what they use.
_DELETE_ORDER = (
    "Microsoft.Compute/virtualMachines",
    "Microsoft.Network/networkInterfaces",
    "Microsoft.Network/publicIPAddresses",
    "Microsoft.Network/virtualNetworks/subnets",
    "Microsoft.Network/virtualNetworks",
    "Microsoft.Compute/disks",
    "Microsoft.Compute/galleries/images/versions",
    "Microsoft.Compute/galleries/images",
    "Microsoft.Compute/galleries",
    "Microsoft.Compute/images",
)


def _delete_rank(resource: Resource) -> int:
    kind = resource.rid.type.lower()
    return next((i for i, t in enumerate(_DELETE_ORDER) if t.lower() == kind), len(_DELETE_ORDER))


class ResourceGroups(Kind):
    type = GROUP
    put_async = False

    def build(self, ctx: Context, rid: ResourceId, body: Mapping[str, Any], existing: Resource | None) -> Resource:
        given = str(body.get("location") or "")
        if existing is not None and given and given.replace(" ", "").lower() != existing.body["location"]:
            raise errors.conflict(
                "InvalidResourceGroupLocation",
                f"Invalid resource group location '{given}'. The Resource group already exists in location "
                f"'{existing.body['location']}'.",
            )
        resource = super().build(ctx, rid, body, existing)
        resource.body["properties"] = {"provisioningState": "Succeeded"}
        return resource

    def delete(self, ctx: Context, resource: Resource, *, cascade: bool) -> Change:
        contents = sorted(ctx.state.in_group(resource.rid), key=_delete_rank)
        changes = []
        for item in contents:
            if ctx.state.get(item.rid) is not None:  # not gone with an earlier one (a vnet's subnets)
                changes.append(ctx.apply_delete(item.rid, cascade=True))
        ctx.state.remove(resource.rid)

        def finish() -> None:
            for change in changes:
                change.run()

        return Change(work=finish)


_OPERATION_IDS = itertools.count(1)


class Deployments(Kind):
    type = DEPLOYMENT
    tracked = False
    sync_actions = frozenset({"validate"})
    actions_without_resource = frozenset({"validate"})

    def plan(self, ctx: Context, rid: ResourceId, body: Json) -> list[templates.PlannedResource]:
        props = properties(body)
        if "templateLink" in props or "parametersLink" in props:
            raise errors.unsupported("A deployment from a template link")
        if str(props.get("mode", "Incremental")).lower() != "incremental":
            raise errors.unsupported("A deployment in Complete mode")
        group = ctx.state.group(rid)
        subscription = ctx.state.subscription(rid.subscription)
        scope = templates.Scope(
            subscription_id=rid.subscription,
            tenant_id=subscription.tenant,
            group_name=group.rid.name,
            group_location=str(group.body["location"]),
            deployment_name=rid.name,
            group_tags=dict(group.body.get("tags") or {}),
        )
        try:
            return templates.plan(props.get("template") or {}, props.get("parameters") or {}, scope)
        except templates.TemplateError as exc:
            raise errors.bad_request("InvalidTemplate", str(exc)) from None

    def writes(self, ctx: Context, rid: ResourceId, body: Json) -> list[tuple[str, str]]:
        return [*super().writes(ctx, rid, body), *((f"{p.type}/write", p.id) for p in self.plan(ctx, rid, body))]

    def create(self, ctx: Context, rid: ResourceId, body: Json, existing: Resource | None) -> Change:
        if existing is not None and existing.properties.get("provisioningState") in ("Accepted", "Running"):
            raise errors.conflict("DeploymentActive", f"The deployment '{rid.name}' is still active.")
        planned = self.plan(ctx, rid, body)
        props = properties(body)
        declared = (props.get("template") or {}).get("parameters") or {}
        given = props.get("parameters") or {}
        parameters = {
            name: {
                "type": spec.get("type", "String"),
                **(
                    {} if "secure" in str(spec.get("type", "")).lower() else {"value": given.get(name, {}).get("value")}
                ),
            }
            for name, spec in declared.items()
            if name in given
        }
        template_text = json.dumps(props.get("template"), sort_keys=True)
        resource = Resource(
            rid,
            {
                "id": str(rid),
                "name": rid.name,
                "type": DEPLOYMENT,
                "tags": tags_of(body),
                "properties": {
                    "templateHash": str(int(hashlib.sha256(template_text.encode()).hexdigest()[:15], 16)),
                    "parameters": parameters,
                    "mode": "Incremental",
                    "provisioningState": "Running",
                    "timestamp": timestamp(),
                    "duration": "PT0S",
                    "correlationId": str(uuid.uuid4()),
                    "providers": [],
                    "dependencies": [],
                    "outputResources": [],
                },
            },
            {"operations": [], "created": timestamp()},
        )
        ctx.state.add(resource)
        return Change(work=lambda: self._run(ctx, resource, body, planned), failure_in_body=True)

    def _run(self, ctx: Context, deployment: Resource, body: Json, planned: list[templates.PlannedResource]) -> None:
        """Create the template's resources in order, as if each were PUT on its own."""
        operations: list[Json] = deployment.extra["operations"]
        for item in planned:
            rid = ResourceId.parse(item.id)
            operation: Json = {
                "id": f"{deployment.id}/operations/{next(_OPERATION_IDS)}",
                "properties": {
                    "provisioningOperation": "Create",
                    "timestamp": timestamp(),
                    "duration": "PT1S",
                    "trackingId": str(uuid.uuid4()),
                    "targetResource": {"id": str(rid), "resourceType": item.type, "resourceName": item.name},
                },
            }
            operation["operationId"] = operation["id"].rsplit("/", 1)[1]
            try:
                with ctx.state.lock:
                    existed = ctx.state.get(rid) is not None
                    _, change = ctx.apply_put(rid, copy.deepcopy(item.body))
                change.run()
            except errors.ArmError as exc:
                operation["properties"].update(
                    {"provisioningState": "Failed", "statusCode": _status_name(exc.status), "statusMessage": exc.body()}
                )
                failure = errors.ArmError(
                    400,
                    "DeploymentFailed",
                    "At least one resource deployment operation failed. Please list deployment operations for details. "
                    "Please see https://aka.ms/arm-deployment-operations for usage details.",
                    details=[exc],
                )
                with ctx.state.lock:
                    operations.append(operation)
                    deployment.properties.update({"provisioningState": "Failed", "error": failure.error()})
                raise failure from None
            operation["properties"].update(
                {"provisioningState": "Succeeded", "statusCode": "OK" if existed else "Created"}
            )
            with ctx.state.lock:
                operations.append(operation)
                deployment.properties["outputResources"].append({"id": str(rid)})
        group = ctx.state.group(deployment.rid)
        scope = templates.Scope(
            deployment.rid.subscription,
            ctx.state.subscription(deployment.rid.subscription).tenant,
            group.rid.name,
            str(group.body["location"]),
            deployment.rid.name,
        )
        props = properties(body)
        outputs = templates.outputs(props.get("template") or {}, props.get("parameters") or {}, scope)
        with ctx.state.lock:
            deployment.properties.update({"provisioningState": "Succeeded", "outputs": outputs})

    def action(self, ctx: Context, rid: ResourceId, name: str, body: Json) -> Change:
        if name.lower() != "validate":
            return super().action(ctx, rid, name, body)
        planned = self.plan(ctx, rid, body)
        result = {
            "id": str(rid),
            "name": rid.name,
            "type": DEPLOYMENT,
            "properties": {
                "provisioningState": "Succeeded",
                "mode": "Incremental",
                "timestamp": timestamp(),
                "validatedResources": [{"id": p.id} for p in planned],
            },
        }
        return Change(result=lambda: result)

    def view(self, ctx: Context, resource: Resource, path: list[str], query: Mapping[str, str]) -> Json | None:
        if not path or path[0].lower() != "operations":
            return None
        # Newest first, as ARM lists them: a resource before the resources it depends on.
        operations = list(reversed(resource.extra["operations"]))
        if len(path) == 2:
            found: Json | None = next((o for o in operations if o["operationId"] == path[1]), None)
            if found is None:
                raise errors.ArmError(404, "DeploymentOperationNotFound", f"The operation '{path[1]}' was not found.")
            return copy.deepcopy(found)
        top = query.get("$top")
        if top is not None:
            operations = operations[: int(top)]
        return {"value": copy.deepcopy(operations)}


def _status_name(status: int) -> str:
    return {400: "BadRequest", 403: "Forbidden", 404: "NotFound", 409: "Conflict"}.get(status, "InternalServerError")


# --- tags at a scope -------------------------------------------------------------------------


def tags_body(resource: Resource) -> Json:
    return {
        "id": f"{resource.id}/providers/Microsoft.Resources/tags/default",
        "name": "default",
        "type": "Microsoft.Resources/tags",
        "properties": {"tags": dict(resource.body.get("tags") or {})},
    }


def change_tags(resource: Resource, method: str, body: Json) -> None:
    """PUT replaces, PATCH merges, replaces or deletes (its `operation`), DELETE clears."""
    given = tags_of(properties(body))
    current: dict[str, str] = dict(resource.body.get("tags") or {})
    if method == "DELETE":
        current = {}
    elif method == "PUT":
        current = given
    else:
        operation = str(body.get("operation", "")).lower()
        if operation == "merge":
            current.update(given)
        elif operation == "replace":
            current = given
        elif operation == "delete":
            current = {k: v for k, v in current.items() if not (k in given and given[k] in ("", v))}
        else:
            raise errors.bad_request("InvalidTagOperation", "The operation must be Merge, Replace or Delete.")
    resource.body["tags"] = current


# --- resource lists ----------------------------------------------------------------------------

_CLAUSE = re.compile(r"^\s*(\w+)\s+eq\s+'((?:[^']|'')*)'\s*$", re.IGNORECASE)
_SUBSTRING = re.compile(r"^\s*substringof\(\s*'((?:[^']|'')*)'\s*,\s*(\w+)\s*\)\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class Filter:
    """An OData `$filter` of resource and group lists."""

    equal: tuple[tuple[str, str], ...] = ()  # (resourcetype | name | location, value), case-insensitive
    name_contains: tuple[str, ...] = ()
    tag_name: str | None = None
    tag_value: str | None = None

    def __call__(self, resource: Resource) -> bool:
        fields = {
            "resourcetype": resource.rid.type,
            "name": resource.rid.name,
            "location": str(resource.body.get("location", "")),
        }
        if any(fields[f].lower() != v.lower() for f, v in self.equal):
            return False
        if any(n not in resource.rid.name.lower() for n in self.name_contains):
            return False
        return self.tag_name is None or _has_tag(resource, self.tag_name, self.tag_value)


def parse_filter(text: str | None) -> Filter:
    """`tagName eq 'k' and tagValue eq 'v'`, `resourceType eq ...`, `name eq ...`,
    `location eq ...` and `substringof('x', name)`, joined by `and`."""
    if not text:
        return Filter()
    equal: list[tuple[str, str]] = []
    contains: list[str] = []
    tags: dict[str, str] = {}
    for clause in re.split(r"\s+and\s+", text.strip(), flags=re.IGNORECASE):
        match = _CLAUSE.match(clause)
        substring = _SUBSTRING.match(clause)
        if substring and substring.group(2).lower() == "name":
            contains.append(substring.group(1).replace("''", "'").lower())
        elif match and match.group(1).lower() in ("tagname", "tagvalue"):
            tags[match.group(1).lower()] = match.group(2).replace("''", "'")
        elif match and match.group(1).lower() in ("resourcetype", "name", "location"):
            equal.append((match.group(1).lower(), match.group(2).replace("''", "'")))
        else:
            raise _invalid_filter(text)
    if "tagvalue" in tags and "tagname" not in tags:
        raise _invalid_filter(text)
    return Filter(tuple(equal), tuple(contains), tags.get("tagname"), tags.get("tagvalue"))


def _has_tag(resource: Resource, name: str, value: str | None) -> bool:
    for key, actual in (resource.body.get("tags") or {}).items():
        if key.lower() == name.lower() and (value is None or actual == value):
            return True
    return False


def _invalid_filter(text: str) -> errors.ArmError:
    return errors.bad_request("InvalidFilterInQueryString", f"Invalid $filter '{text}' specified in the query string.")


def generic(resource: Resource, expand: str | None) -> Json:
    """A resource as resource lists show it."""
    body = resource.body
    out: Json = {
        "id": resource.id,
        "name": resource.rid.name,
        "type": resource.rid.type,
        "location": body.get("location"),
    }
    for key in ("tags", "sku", "kind", "managedBy"):
        if body.get(key):
            out[key] = copy.deepcopy(body[key])
    wanted = {w.strip().lower() for w in (expand or "").split(",")}
    if "createdtime" in wanted:
        out["createdTime"] = resource.extra.get("created")
    if "provisioningstate" in wanted:
        out["provisioningState"] = body.get("properties", {}).get("provisioningState", "Succeeded")
    return out


def listed(resources: list[Resource]) -> list[Resource]:
    """What resource lists include: tracked resources (gallery images and versions too), not
    resource groups, deployments or subnets."""
    return [r for r in resources if not r.rid.is_group and kind_for(r.rid.type).tracked]


for _kind in (ResourceGroups(), Deployments()):
    register(_kind)
