"""The WSGI app of management.azure.com: authentication, authorization and case-insensitive
routing of ARM's URL space to the resource kinds, the answers of long-running operations, and
`/_fake/state` (the fake's state as JSON, for tests in other processes)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING
from urllib.parse import unquote
from wsgiref.types import StartResponse, WSGIEnvironment

from werkzeug.wrappers import Request, Response

from . import compute, errors, regions, resources
from .errors import ArmError
from .ids import ResourceId, canonical
from .kinds import Change, Kind, kind_for
from .operations import RETRY_AFTER
from .state import Json
from .tokens import BadTokenError, Caller
from .wsgi import json_response

if TYPE_CHECKING:
    from .fake import Arm

AUDIENCES = (
    "https://management.azure.com/",
    "https://management.azure.com",
    "https://management.core.windows.net/",
    "https://management.core.windows.net",
)
_TERMINAL = ("Succeeded", "Failed", "Canceled")


class Management:
    def __init__(self, arm: Arm) -> None:
        self.arm = arm

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        request = Request(environ)
        caller: Caller | None = None
        try:
            response, caller = self.dispatch(request)
        except ArmError as exc:
            response = json_response(exc.status, exc.body(), (exc.status == 401 and self._challenge(request)) or None)
        self.arm.log_request(request, response.status_code, caller)
        return response(environ, start_response)

    def _challenge(self, request: Request) -> dict[str, str]:
        """What ARM answers an unauthenticated request: the tenant of the subscription asked
        for, which Packer reads when it is given no tenant."""
        parts = [p for p in request.path.split("/") if p]
        tenant = self.arm.tenant_of(parts[1]) if len(parts) > 1 and parts[0].lower() == "subscriptions" else None
        tenant = tenant or "common"
        return {
            "WWW-Authenticate": f'Bearer authorization_uri="https://login.windows.net/{tenant}", '
            'error="invalid_token", error_description="The authentication failed because of missing '
            "'Authorization' header.\""
        }

    def _caller(self, request: Request) -> Caller:
        header = request.headers.get("Authorization", "")
        if not header:
            raise ArmError(401, "AuthenticationFailed", "Authentication failed. The 'Authorization' header is missing.")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise ArmError(
                401,
                "AuthenticationFailedInvalidHeader",
                "Authentication failed. The 'Authorization' header is invalid.",
            )
        try:
            return self.arm.tokens.verify(token.strip(), AUDIENCES)
        except BadTokenError as exc:
            raise ArmError(401, "InvalidAuthenticationToken", str(exc)) from None

    def dispatch(self, request: Request) -> tuple[Response, Caller | None]:
        parts = [unquote(p) for p in request.path.split("/") if p]
        low = [p.lower() for p in parts]
        if low[:1] == ["_fake"]:
            if low == ["_fake", "state"]:
                return json_response(200, self.arm.snapshot()), None
            raise ArmError(404, "NotFound", f"No fake endpoint {request.path}.")
        if low[:1] != ["subscriptions"]:
            raise ArmError(404, "InvalidRequestUri", f"The request URI '{request.path}' is not supported by the fake.")
        if not request.args.get("api-version"):
            raise ArmError(
                400,
                "MissingApiVersionParameter",
                "The api-version query parameter (?api-version=) is required for all requests.",
            )
        caller = self._caller(request)
        if len(parts) == 1:
            subscriptions = [
                s.body() for s in self.arm.state.subscriptions.values() if s.tenant.lower() == caller.tenant.lower()
            ]
            return json_response(200, {"value": subscriptions}), caller
        subscription = self.arm.state.subscription(parts[1])
        if subscription.tenant.lower() != caller.tenant.lower():
            raise ArmError(
                401,
                "InvalidAuthenticationTokenTenant",
                f"The access token is from the wrong issuer 'https://sts.windows.net/{caller.tenant}/'. It must match "
                f"the tenant 'https://sts.windows.net/{subscription.tenant}/' associated with this subscription.",
            )
        return Route(self.arm, request, caller, parts, low).answer(), caller


class Route:
    """One request below /subscriptions/S."""

    def __init__(self, arm: Arm, request: Request, caller: Caller, parts: list[str], low: list[str]) -> None:
        self.arm = arm
        self.state = arm.state
        self.request = request
        self.caller = caller
        self.method = request.method.upper()
        self.parts = parts
        self.low = low
        self.query: Mapping[str, str] = request.args

    def body(self) -> Json:
        raw = self.request.get_data(as_text=True)
        if not raw.strip():
            return {}
        try:
            value = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise errors.bad_request("InvalidRequestContent", f"The request content was invalid: {exc}.") from None
        if not isinstance(value, dict):
            raise errors.bad_request("InvalidRequestContent", "The request content must be a JSON object.")
        return value

    def authorize(self, action: str, scope: str) -> None:
        self.arm.authorize(self.caller, action, scope)

    def answer(self) -> Response:
        parts, low = self.parts, self.low
        subscription = parts[1]
        if low[-4:] == ["providers", "microsoft.resources", "tags", "default"]:
            return self.tags(parts[:-4])
        rest, rest_low = parts[2:], low[2:]
        if not rest:
            self.authorize("Microsoft.Resources/subscriptions/read", f"/subscriptions/{subscription}")
            return json_response(200, self.state.subscription(subscription).body())
        if rest_low == ["resources"]:
            return self.list_resources(ResourceId(subscription), None)
        if rest_low == ["locations"]:
            names = self.state.subscription(subscription).locations
            return json_response(200, {"value": [_location(subscription, n) for n in names]})
        if rest_low[0] == "resourcegroups":
            return self.groups(subscription, rest)
        if rest_low[0] == "providers" and len(rest) >= 3:
            return self.subscription_provider(subscription, rest[1], rest[2:])
        raise ArmError(404, "InvalidRequestUri", f"The request URI '{self.request.path}' is not supported by the fake.")

    # --- resource groups and what is in them ---

    def groups(self, subscription: str, rest: list[str]) -> Response:
        low = [p.lower() for p in rest]
        if len(rest) == 1:
            self._method("GET")
            self.authorize("Microsoft.Resources/subscriptions/resourceGroups/read", f"/subscriptions/{subscription}")
            match = resources.parse_filter(self.query.get("$filter"))
            with self.state.lock:
                groups = [r for r in self.state.resources.values() if r.rid.is_group and match(r)]
                groups = [g for g in groups if g.rid.subscription.lower() == subscription.lower()]
                return json_response(200, {"value": [g.body for g in groups]})
        group = ResourceId(subscription, rest[1])
        if len(rest) == 2:
            return self.resource(group)
        if low[2:] == ["resources"]:
            return self.list_resources(group, group)
        if low[2] == "deployments":  # the old path Packer lists deployment operations on
            return self.provider(group, "Microsoft.Resources", rest[2:])
        if low[2] == "providers" and len(rest) >= 5:
            return self.provider(group, rest[3], rest[4:])
        raise ArmError(404, "InvalidRequestUri", f"The request URI '{self.request.path}' is not supported by the fake.")

    def provider(self, group: ResourceId, namespace: str, tail: list[str]) -> Response:
        """Below .../resourceGroups/G/providers/NS: a resource, its children, views and actions."""
        if len(tail) == 1:
            self._method("GET")
            full_type = f"{canonical(namespace)}/{canonical(tail[0])}"
            return self.list_of_type(full_type, group)
        pairs = tail if len(tail) % 2 == 0 else tail[:-1]
        rid = ResourceId(
            group.subscription,
            group.group,
            canonical(namespace),
            tuple(canonical(t) for t in pairs[0::2]),
            tuple(pairs[1::2]),
        )
        if rid.type.lower() == "microsoft.resources/deployments/operations":
            return self.view(
                ResourceId(rid.subscription, rid.group, rid.namespace, rid.types[:1], rid.names[:1]), tail[2:]
            )
        if len(tail) % 2 == 0:
            return self.resource(rid)
        last = tail[-1]
        if self.method == "POST":
            return self.action(rid, last)
        self._method("GET")
        kind = kind_for(rid.type)
        with self.state.lock:
            resource = self.state.require(rid)
            self.authorize(f"{rid.action_type}/read", str(rid))
            shown = kind.view(self.arm, resource, [last], self.query)
        if shown is not None:
            return json_response(200, shown)
        return self.list_of_type(f"{rid.type}/{canonical(last)}", rid)

    def view(self, rid: ResourceId, path: list[str]) -> Response:
        self._method("GET")
        with self.state.lock:
            resource = self.state.require(rid)
            self.authorize(f"{rid.action_type}/{path[0]}/read", str(rid))
            shown = kind_for(rid.type).view(self.arm, resource, path, self.query)
        if shown is None:
            raise errors.not_found(rid)
        return json_response(200, shown)

    def list_of_type(self, full_type: str, scope: ResourceId) -> Response:
        """Every resource of a type in a resource group, below a parent, or in a subscription."""
        with self.state.lock:
            if scope.group is not None:
                self.state.require(scope)
            else:
                self.state.subscription(scope.subscription)
            self.authorize(f"{full_type}/read", str(scope))
            prefix = scope.key + "/"
            found = [r for r in self.state.of_type(full_type, scope.subscription) if r.rid.key.startswith(prefix)]
            kind = kind_for(full_type)
            return json_response(200, {"value": [kind.render(self.arm, r, self.query) for r in found]})

    def list_resources(self, scope: ResourceId, group: ResourceId | None) -> Response:
        self._method("GET")
        with self.state.lock:
            if group is not None:
                self.state.group(group)
                action = "Microsoft.Resources/subscriptions/resourceGroups/resources/read"
            else:
                self.state.subscription(scope.subscription)
                action = "Microsoft.Resources/subscriptions/resources/read"
            self.authorize(action, str(scope))
            match = resources.parse_filter(self.query.get("$filter"))
            prefix = scope.key + "/"
            found = [r for r in resources.listed(list(self.state.resources.values())) if r.rid.key.startswith(prefix)]
            found = [r for r in found if match(r)]
            top = self.query.get("$top")
            if top is not None:
                found = found[: int(top)]
            expand = self.query.get("$expand")
            shown = [resources.generic(r, expand) for r in found]
            if match.tag_name is not None:
                # Resources - List: "When you filter by a tag name and value, the tags for each
                # resource are not returned in the results." (resource groups keep theirs)
                for item in shown:
                    item.pop("tags", None)
            return json_response(200, {"value": shown})

    # --- one resource ---

    def resource(self, rid: ResourceId) -> Response:
        kind = kind_for(rid.type)
        if self.method == "HEAD":  # existence checks: no body, 204 or 404
            with self.state.lock:
                self._parents(rid)
                self.authorize(f"{rid.action_type}/read", str(rid))
                return Response(status=204 if self.state.get(rid) is not None else 404)
        if self.method == "GET":
            with self.state.lock:
                resource = self.state.require(rid)
                self.authorize(f"{rid.action_type}/read", str(rid))
                body = kind.render(self.arm, resource, self.query)
            return json_response(200, body, _pending(body))
        if self.method == "PUT":
            body = self.body()
            with self.state.lock:
                self._parents(rid)
                for action, scope in kind.writes(self.arm, rid, body):
                    self.authorize(action, scope)
                created = self.state.get(rid) is None
                _, change = self.arm.apply_put(rid, body)
            return self.finish(
                kind, rid, change, async_=kind.put_async, sync_status=201 if created else 200, verb="put"
            )
        if self.method == "PATCH":
            body = self.body()
            with self.state.lock:
                resource = self.state.require(rid)
                self.authorize(f"{rid.action_type}/write", str(rid))
                change = kind.update(self.arm, resource, body)
            return self.finish(kind, rid, change, async_=kind.put_async, sync_status=200, verb="patch")
        if self.method == "DELETE":
            with self.state.lock:
                self._parents(rid)
                self.authorize(f"{rid.action_type}/delete", str(rid))
                if self.state.get(rid) is None:
                    if rid.is_group:
                        # Resource Groups - Delete answers 200 or 202, and ResourceGroupNotFound
                        # for a group that does not exist (the SDK refuses a 204 there).
                        raise errors.group_not_found(rid.name)
                    return Response(status=204)
                location = self._location(rid)
                change = self.arm.apply_delete(rid, cascade=False)
            return self.finish(
                kind, rid, change, async_=kind.delete_async, sync_status=200, verb="delete", location=location
            )
        raise ArmError(405, "MethodNotAllowed", f"The method {self.method} is not allowed here.")

    def _parents(self, rid: ResourceId) -> None:
        """The resource group, and for a nested resource its parent, must exist."""
        if rid.is_group:
            self.state.subscription(rid.subscription)
            return
        self.state.group(rid)
        if rid.parent is not None:
            self.state.require(rid.parent)

    def action(self, rid: ResourceId, name: str) -> Response:
        kind = kind_for(rid.type)
        body = self.body()
        with self.state.lock:
            if name.lower() in kind.actions_without_resource:
                self._parents(rid)
                for action, scope in kind.writes(self.arm, rid, body):
                    self.authorize(action, scope)
            else:
                self.state.require(rid)
                self.authorize(f"{rid.action_type}/{name}/action", str(rid))
            change = kind.action(self.arm, rid, name, body)
        async_ = name.lower() not in kind.sync_actions
        return self.finish(kind, rid, change, async_=async_, sync_status=200, verb="post")

    def finish(
        self,
        kind: Kind,
        rid: ResourceId,
        change: Change,
        *,
        async_: bool,
        sync_status: int,
        verb: str,
        location: str | None = None,
    ) -> Response:
        """Answer a change at once (its work done inline) or as an asynchronous operation."""
        settings = self.state.settings
        if not async_ or settings.lro == "sync":
            try:
                change.run()
            except ArmError:
                if not change.failure_in_body:
                    raise
            return self._answer(kind, rid, change, verb, sync_status, {})
        operation = self.arm.operations.start(
            subscription=rid.subscription,
            namespace=rid.namespace or "Microsoft.Resources",
            location=location or self._location(rid),
            polls=settings.async_polls,
            work=change.work,
            ready=change.ready,
            result=change.result,
        )
        if verb in ("put", "patch"):
            status = 201 if sync_status == 201 else 200
            return self._answer(kind, rid, change, verb, status, operation.headers(location=False))
        return Response(status=202, headers=operation.headers(location=True))

    def _location(self, rid: ResourceId) -> str:
        with self.state.lock:
            found = self.state.get(rid)
            if found is not None and found.body.get("location"):
                return str(found.body["location"])
            group = self.state.get(rid.group_id) if rid.group else None
            return str(group.body.get("location", "global")) if group else "global"

    def _answer(
        self, kind: Kind, rid: ResourceId, change: Change, verb: str, status: int, headers: dict[str, str]
    ) -> Response:
        if verb == "delete":
            return Response(status=status, headers=headers)
        if verb == "post":
            result = change.result() if change.result else None
            return (
                json_response(status, result, headers)
                if result is not None
                else Response(status=status, headers=headers)
            )
        with self.state.lock:
            resource = self.state.get(rid)
            body = kind.render(self.arm, resource, self.query) if resource else {}
        return json_response(status, body, {**_pending(body), **headers})

    # --- subscription-level providers: operations, the marketplace, lists by type ---

    def subscription_provider(self, subscription: str, namespace: str, tail: list[str]) -> Response:
        low = [p.lower() for p in tail]
        if len(tail) == 4 and low[0] == "locations" and low[2] in ("operations", "operationresults"):
            return self.operation(tail[3], result=low[2] == "operationresults")
        if (
            namespace.lower() == "microsoft.compute"
            and len(tail) >= 4
            and low[0] == "locations"
            and low[2] == "publishers"
        ):
            self._method("GET")
            self.authorize(
                "Microsoft.Compute/locations/publishers/artifacttypes/offers/skus/versions/read",
                f"/subscriptions/{subscription}",
            )
            with self.state.lock:
                return json_response(200, compute.marketplace(self.arm, subscription, tail[1], tail[3:], self.query))
        if len(tail) == 1:
            self._method("GET")
            return self.list_of_type(f"{canonical(namespace)}/{canonical(tail[0])}", ResourceId(subscription))
        raise ArmError(404, "InvalidRequestUri", f"The request URI '{self.request.path}' is not supported by the fake.")

    def operation(self, operation_id: str, *, result: bool) -> Response:
        operation, status, error = self.arm.operations.poll(operation_id)
        if result:  # the Location URL: 202 while running, then the outcome
            if status == "InProgress":
                return Response(status=202, headers={**operation.headers(location=True), **RETRY_AFTER})
            if error is not None:
                return json_response(error.status, error.body())
            body = operation.result() if operation.result else None
            return json_response(200, body) if body is not None else Response(status=204)
        answer: Json = {"id": operation.path, "name": operation.id, "status": status, "startTime": operation.started}
        if status != "InProgress":
            answer["endTime"] = operation.ended
        if error is not None:
            answer["error"] = error.error()
        return json_response(200, answer, RETRY_AFTER if status == "InProgress" else None)

    # --- tags at a scope ---

    def tags(self, scope_parts: list[str]) -> Response:
        try:
            rid = ResourceId.parse("/" + "/".join(scope_parts))
        except ValueError:
            raise errors.unsupported(f"Tags at the scope /{'/'.join(scope_parts)}") from None
        if rid.group is None:
            raise errors.unsupported("Tags of a subscription")
        verb = {"GET": "read", "PUT": "write", "PATCH": "write", "DELETE": "delete"}.get(self.method)
        if verb is None:
            raise ArmError(405, "MethodNotAllowed", f"The method {self.method} is not allowed here.")
        body = self.body() if self.method in ("PUT", "PATCH") else {}
        with self.state.lock:
            resource = self.state.require(rid)
            self.authorize(f"Microsoft.Resources/tags/{verb}", str(rid))
            if self.method != "GET":
                resources.change_tags(resource, self.method, body)
            if self.method == "DELETE":
                return Response(status=200)
            return json_response(200, resources.tags_body(resource))

    def _method(self, *allowed: str) -> None:
        if self.method not in allowed:
            raise ArmError(405, "MethodNotAllowed", f"The method {self.method} is not allowed here.")


def _pending(body: Json) -> dict[str, str]:
    """Ask pollers of a resource still being provisioned to come back soon."""
    state = (body.get("properties") or {}).get("provisioningState") if isinstance(body, dict) else None
    return dict(RETRY_AFTER) if state is not None and state not in _TERMINAL else {}


def _location(subscription: str, name: str) -> Json:
    return {
        "id": f"/subscriptions/{subscription}/locations/{name}",
        "name": name,
        "displayName": regions.display(name),
        "metadata": {"regionType": "Physical"},
    }
