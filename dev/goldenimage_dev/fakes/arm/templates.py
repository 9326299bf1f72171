"""ARM deployment templates (pure): the expression language and the plan of a deployment.

Covers what Packer's `azure-arm` templates use (parameters(), variables(), concat(),
resourceGroup(), resourceId(), dependsOn) plus the everyday functions of hand-written templates.
What it does not cover (copy loops, reference(), linked templates) is refused with an
InvalidTemplate error naming it, never evaluated half-way.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any


class TemplateError(Exception):
    """The template or its parameters are invalid (ARM's InvalidTemplate)."""


@dataclass(frozen=True)
class Scope:
    """Where a deployment runs: what resourceGroup(), subscription() and deployment() return."""

    subscription_id: str
    tenant_id: str
    group_name: str
    group_location: str
    deployment_name: str
    group_tags: Mapping[str, str] = field(default_factory=dict)

    @property
    def group_id(self) -> str:
        return f"/subscriptions/{self.subscription_id}/resourceGroups/{self.group_name}"


@dataclass(frozen=True)
class PlannedResource:
    """One resource of a template, every expression evaluated."""

    id: str
    type: str  # e.g. Microsoft.Network/virtualNetworks/subnets
    name: str  # e.g. vnet/subnet for a nested type
    api_version: str
    body: dict[str, Any]  # location, tags, properties, sku, ...: what a PUT of the resource would send
    depends_on: tuple[str, ...]  # ids of resources of this template


# --- the expression language ---------------------------------------------------------------

_TOKEN = re.compile(
    r"\s*(?:(?P<string>'(?:[^']|'')*')|(?P<number>-?\d+)|(?P<name>[A-Za-z_][A-Za-z0-9_]*)|(?P<punct>[()\[\],.]))"
)


def is_expression(value: str) -> bool:
    return value.startswith("[") and value.endswith("]") and not value.startswith("[[")


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        match = _TOKEN.match(text, pos)
        if not match:
            raise TemplateError(f"The template language expression '{text}' is not valid: unexpected text at {pos}.")
        kind = match.lastgroup
        assert kind is not None
        out.append((kind, match.group(kind)))
        pos = match.end()
    return out


@dataclass
class _Call:
    name: str
    args: list[_Node]


@dataclass
class _Literal:
    value: Any


@dataclass
class _Member:
    target: _Node
    key: _Node  # a literal for `.name`, any expression for `[index]`


_Node = _Call | _Literal | _Member


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokens(text)
        self.pos = 0

    def parse(self) -> _Node:
        node = self._expression()
        if self.pos != len(self.tokens):
            self._fail("unexpected text after the expression")
        return node

    def _fail(self, why: str) -> None:
        raise TemplateError(f"The template language expression '{self.text}' is not valid: {why}.")

    def _next(self) -> tuple[str, str]:
        if self.pos >= len(self.tokens):
            self._fail("it ends too early")
        token = self.tokens[self.pos]
        self.pos += 1
        return token

    def _peek(self, value: str) -> bool:
        return self.pos < len(self.tokens) and self.tokens[self.pos] == ("punct", value)

    def _expect(self, value: str) -> None:
        if self._next() != ("punct", value):
            self._fail(f"'{value}' expected")

    def _expression(self) -> _Node:
        kind, value = self._next()
        node: _Node
        if kind == "string":
            node = _Literal(value[1:-1].replace("''", "'"))
        elif kind == "number":
            node = _Literal(int(value))
        elif kind == "name":
            self._expect("(")
            args: list[_Node] = []
            if not self._peek(")"):
                args.append(self._expression())
                while self._peek(","):
                    self.pos += 1
                    args.append(self._expression())
            self._expect(")")
            node = _Call(value, args)
        else:
            self._fail(f"unexpected '{value}'")
            raise AssertionError  # unreachable: _fail raises
        while self._peek(".") or self._peek("["):
            if self._next()[1] == ".":
                kind, value = self._next()
                if kind != "name":
                    self._fail("a property name expected after '.'")
                node = _Member(node, _Literal(value))
            else:
                index = self._expression()
                self._expect("]")
                node = _Member(node, index)
        return node


def parse(text: str) -> _Node:
    """Parse the inside of a `[...]` expression."""
    return _Parser(text).parse()


# --- evaluation ------------------------------------------------------------------------------


def _unique_string(*parts: str) -> str:
    """13 lower-case characters, deterministic in its arguments like ARM's (not the same hash)."""
    digest = hashlib.sha256("-".join(parts).encode()).digest()
    return base64.b32encode(digest).decode().lower()[:13]


def _format(template: str, *args: Any) -> str:
    return re.sub(r"\{(\d+)(?::[^}]*)?\}", lambda m: _string(args[int(m.group(1))]), template)


def _string(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    return "" if value is None else str(value)


def _concat(*args: Any) -> Any:
    if args and all(isinstance(a, list) for a in args):
        return [item for a in args for item in a]
    return "".join(_string(a) for a in args)


def _union(*args: Any) -> Any:
    if args and all(isinstance(a, dict) for a in args):
        merged: dict[str, Any] = {}
        for a in args:
            merged.update(a)
        return merged
    out: list[Any] = []
    for a in args:
        out.extend(item for item in a if item not in out)
    return out


def _contains(container: Any, item: Any) -> bool:
    if isinstance(container, str):
        return str(item).lower() in container.lower()
    if isinstance(container, dict):
        return any(k.lower() == str(item).lower() for k in container)
    return item in container


def _equals(a: Any, b: Any) -> bool:
    if isinstance(a, str) and isinstance(b, str):
        return a.lower() == b.lower()  # ARM compares strings case-insensitively
    return bool(a == b)


def _empty(value: Any) -> bool:
    return value is None or (isinstance(value, str | list | dict) and len(value) == 0)


_PURE: dict[str, Callable[..., Any]] = {
    "concat": _concat,
    "format": _format,
    "string": _string,
    "int": lambda v: int(v),
    "bool": lambda v: v if isinstance(v, bool) else str(v).lower() == "true",
    "tolower": lambda s: s.lower(),
    "toupper": lambda s: s.upper(),
    "trim": lambda s: s.strip(),
    "substring": lambda s, start, length=None: s[start:] if length is None else s[start : start + length],
    "replace": lambda s, old, new: s.replace(old, new),
    "split": lambda s, sep: s.split(sep) if isinstance(sep, str) else re.split("|".join(map(re.escape, sep)), s),
    "startswith": lambda s, p: s.lower().startswith(p.lower()),
    "endswith": lambda s, p: s.lower().endswith(p.lower()),
    "indexof": lambda s, p: s.lower().find(p.lower()),
    "padleft": lambda s, n, c=" ": _string(s).rjust(n, c),
    "base64": lambda s: base64.b64encode(s.encode()).decode(),
    "base64tostring": lambda s: base64.b64decode(s).decode(),
    "uniquestring": _unique_string,
    "guid": lambda *parts: str(uuid.uuid5(uuid.NAMESPACE_URL, "-".join(parts))),
    "length": len,
    "empty": _empty,
    "first": lambda v: v[0],
    "last": lambda v: v[-1],
    "contains": _contains,
    "union": _union,
    "createarray": lambda *items: list(items),
    "createobject": lambda *kv: {kv[i]: kv[i + 1] for i in range(0, len(kv), 2)},
    "json": json.loads,
    "coalesce": lambda *items: next((i for i in items if i is not None), None),
    "equals": _equals,
    "not": lambda v: not v,
    "and": lambda *v: all(v),
    "or": lambda *v: any(v),
    "true": lambda: True,
    "false": lambda: False,
    "null": lambda: None,
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "div": lambda a, b: a // b,
    "mod": lambda a, b: a % b,
    "greater": lambda a, b: a > b,
    "less": lambda a, b: a < b,
    "greaterorequals": lambda a, b: a >= b,
    "lessorequals": lambda a, b: a <= b,
    "min": lambda *v: min(v[0] if len(v) == 1 and isinstance(v[0], list) else v),
    "max": lambda *v: max(v[0] if len(v) == 1 and isinstance(v[0], list) else v),
}
_UNSUPPORTED = {"reference", "list", "listkeys", "listsecrets", "copyindex", "providers", "environment", "pickzones"}


class Evaluator:
    """Evaluates the expressions of one template with its parameters in a scope."""

    def __init__(self, template: Mapping[str, Any], parameters: Mapping[str, Any], scope: Scope) -> None:
        self.template = template
        self.scope = scope
        self._declared = {k.lower(): (k, v) for k, v in (template.get("parameters") or {}).items()}
        self._variables = {k.lower(): v for k, v in (template.get("variables") or {}).items()}
        self._given = {k.lower(): v for k, v in parameters.items()}
        self._params: dict[str, Any] = {}
        self._vars: dict[str, Any] = {}
        self._resolving: set[str] = set()
        unknown = sorted(k for k in parameters if k.lower() not in self._declared)
        if unknown:
            raise TemplateError(
                f"Deployment template validation failed: 'The template parameters '{', '.join(unknown)}' in the "
                "parameters file are not valid; they are not present in the original template and can therefore not "
                "be provided at deployment time.'"
            )

    def value(self, node: Any) -> Any:
        """A JSON value with every expression string in it evaluated."""
        if isinstance(node, str):
            if is_expression(node):
                return self.expression(node[1:-1])
            return node[1:] if node.startswith("[[") else node
        if isinstance(node, list):
            return [self.value(item) for item in node]
        if isinstance(node, dict):
            return {key: self.value(item) for key, item in node.items()}
        return node

    def expression(self, text: str) -> Any:
        return self._eval(parse(text))

    def parameter(self, name: str) -> Any:
        key = name.lower()
        if key in self._params:
            return self._params[key]
        if key not in self._declared:
            raise TemplateError(f"The template parameter '{name}' is not found.")
        declared_name, spec = self._declared[key]
        if key in self._given:
            given = self._given[key]
            if not isinstance(given, dict) or "value" not in given:
                if isinstance(given, dict) and "reference" in given:
                    raise TemplateError("Key Vault parameter references are not supported by the local fake.")
                raise TemplateError(
                    f"The value of the template parameter '{declared_name}' must be given as {{value}}."
                )
            result = given["value"]
        elif "defaultValue" in spec:
            result = self._guarded(f"parameter {key}", lambda: self.value(spec["defaultValue"]))
        else:
            raise TemplateError(
                f"Deployment template validation failed: 'The value for the template parameter '{declared_name}' "
                "is not provided. Please see https://aka.ms/arm-create-parameter-file for usage details.'"
            )
        allowed = spec.get("allowedValues")
        if allowed is not None and result not in allowed:
            raise TemplateError(
                f"The provided value '{result}' for the template parameter '{declared_name}' is not valid. "
                f"The parameter value is not part of the allowed value(s): '{','.join(map(_string, allowed))}'."
            )
        self._params[key] = result
        return result

    def variable(self, name: str) -> Any:
        key = name.lower()
        if key not in self._vars:
            if key not in self._variables:
                raise TemplateError(f"The template variable '{name}' is not found.")
            self._vars[key] = self._guarded(f"variable {key}", lambda: self.value(self._variables[key]))
        return self._vars[key]

    def _guarded(self, what: str, compute: Callable[[], Any]) -> Any:
        if what in self._resolving:
            raise TemplateError(f"The template {what} refers to itself.")
        self._resolving.add(what)
        try:
            return compute()
        finally:
            self._resolving.discard(what)

    def _eval(self, node: _Node) -> Any:
        if isinstance(node, _Literal):
            return node.value
        if isinstance(node, _Member):
            target = self._eval(node.target)
            key = self._eval(node.key)
            try:
                if isinstance(target, dict):
                    return next(v for k, v in target.items() if k.lower() == str(key).lower())
                return target[key]
            except (StopIteration, IndexError, KeyError, TypeError):
                raise TemplateError(f"The language expression property '{key}' doesn't exist.") from None
        name = node.name.lower()
        if name == "if":  # only the branch taken is evaluated
            if len(node.args) != 3:
                raise TemplateError("The template function 'if' expects three arguments.")
            return self._eval(node.args[1] if self._eval(node.args[0]) else node.args[2])
        args = [self._eval(arg) for arg in node.args]
        if name == "parameters":
            return self.parameter(args[0])
        if name == "variables":
            return self.variable(args[0])
        if name == "resourcegroup":
            return {
                "id": self.scope.group_id,
                "name": self.scope.group_name,
                "type": "Microsoft.Resources/resourceGroups",
                "location": self.scope.group_location,
                "tags": dict(self.scope.group_tags),
                "properties": {"provisioningState": "Succeeded"},
            }
        if name == "subscription":
            return {
                "id": f"/subscriptions/{self.scope.subscription_id}",
                "subscriptionId": self.scope.subscription_id,
                "tenantId": self.scope.tenant_id,
                "displayName": self.scope.subscription_id,
            }
        if name == "deployment":
            return {
                "name": self.scope.deployment_name,
                "properties": {"template": {"contentVersion": self.template.get("contentVersion", "1.0.0.0")}},
            }
        if name == "resourceid":
            return self.resource_id(*map(_string, args))
        if name == "subscriptionresourceid":
            return _subscription_resource_id(self.scope.subscription_id, *map(_string, args))
        if name in _UNSUPPORTED:
            raise TemplateError(f"The template function '{node.name}' is not supported by the local fake.")
        function = _PURE.get(name)
        if function is None:
            raise TemplateError(f"The template function '{node.name}' is not valid.")
        try:
            return function(*args)
        except (TypeError, ValueError, IndexError, KeyError, AttributeError) as exc:
            raise TemplateError(f"The template function '{node.name}' failed: {exc}.") from None

    def resource_id(self, *args: str) -> str:
        """resourceId([subscriptionId], [resourceGroupName], resourceType, name1, [name2, ...])."""
        at = next((i for i, a in enumerate(args) if "/" in a), None)
        if at is None or at > 2:
            raise TemplateError(f"The template function 'resourceId' has invalid arguments: {list(args)}.")
        subscription = args[0] if at == 2 else self.scope.subscription_id
        group = args[at - 1] if at >= 1 else self.scope.group_name
        return _typed_id(f"/subscriptions/{subscription}/resourceGroups/{group}", args[at], list(args[at + 1 :]))


def _subscription_resource_id(default_subscription: str, *args: str) -> str:
    at = next((i for i, a in enumerate(args) if "/" in a), None)
    if at is None or at > 1:
        raise TemplateError(f"The template function 'subscriptionResourceId' has invalid arguments: {list(args)}.")
    subscription = args[0] if at == 1 else default_subscription
    return _typed_id(f"/subscriptions/{subscription}", args[at], list(args[at + 1 :]))


def _typed_id(prefix: str, full_type: str, names: list[str]) -> str:
    namespace, *types = full_type.split("/")
    names = [part for name in names for part in name.split("/")]
    if len(types) != len(names) or not types:
        raise TemplateError(f"The resource type '{full_type}' needs {len(types)} name segments, got {names}.")
    return prefix + f"/providers/{namespace}" + "".join(f"/{t}/{n}" for t, n in zip(types, names, strict=True))


# --- a deployment's plan -----------------------------------------------------------------------

_BODY_KEYS = ("location", "tags", "properties", "sku", "kind", "plan", "zones", "identity", "managedBy")


def plan(template: Mapping[str, Any], parameters: Mapping[str, Any], scope: Scope) -> list[PlannedResource]:
    """The resources a deployment creates, in an order that respects dependsOn (else the
    template's own order)."""
    if not isinstance(template, Mapping) or not isinstance(template.get("resources", []), list):
        raise TemplateError("The template must be an object with a 'resources' array.")
    evaluator = Evaluator(template, parameters, scope)
    for name in evaluator._declared:
        evaluator.parameter(name)  # every parameter is checked, used or not, as ARM does
    planned: list[tuple[PlannedResource, list[str]]] = []
    for index, resource in enumerate(template.get("resources", [])):
        where = f"resource {index}"
        if "copy" in resource:
            raise TemplateError(f"The 'copy' loop of {where} is not supported by the local fake.")
        if "resources" in resource:
            raise TemplateError(f"Nested child resources of {where} are not supported by the local fake.")
        if "condition" in resource and not evaluator.value(resource["condition"]):
            continue
        kind = evaluator.value(resource.get("type", ""))
        name = evaluator.value(resource.get("name", ""))
        api_version = evaluator.value(resource.get("apiVersion", ""))
        if not kind or not name or not api_version:
            raise TemplateError(f"The {where} needs a type, a name and an apiVersion.")
        if kind.lower() == "microsoft.resources/deployments":
            raise TemplateError("Nested deployments are not supported by the local fake.")
        body = {key: evaluator.value(resource[key]) for key in _BODY_KEYS if key in resource}
        resource_id = _typed_id(scope.group_id, kind, name.split("/"))
        depends = [evaluator.value(d) for d in resource.get("dependsOn", [])]
        planned.append((PlannedResource(resource_id, kind, name, api_version, body, ()), depends))
    resolved = [
        PlannedResource(p.id, p.type, p.name, p.api_version, p.body, tuple(_resolve(d, planned) for d in deps))
        for p, deps in planned
    ]
    return _ordered(resolved)


def _resolve(reference: str, planned: list[tuple[PlannedResource, list[str]]]) -> str:
    """A dependsOn entry (an id, `type/name` or a bare name) as the id of a template resource."""
    ref = reference.lower().strip("/")
    for p, _ in planned:
        if p.id.lower().strip("/") == ref or f"{p.type}/{p.name}".lower() == ref or p.name.lower() == ref:
            return p.id
    raise TemplateError(f"The resource '{reference}' is not defined in the template.")


def _ordered(resources: list[PlannedResource]) -> list[PlannedResource]:
    done: list[PlannedResource] = []
    done_ids: set[str] = set()
    pending = list(resources)
    while pending:
        ready = next((r for r in pending if all(d in done_ids for d in r.depends_on)), None)
        if ready is None:
            raise TemplateError(f"Circular dependency detected on resource: '{pending[0].id}'.")
        pending.remove(ready)
        done.append(ready)
        done_ids.add(ready.id)
    return done


def outputs(template: Mapping[str, Any], parameters: Mapping[str, Any], scope: Scope) -> dict[str, Any]:
    evaluator = Evaluator(template, parameters, scope)
    out: dict[str, Any] = {}
    for name, spec in (template.get("outputs") or {}).items():
        out[name] = {"type": spec.get("type", "String"), "value": evaluator.value(spec.get("value"))}
    return out
