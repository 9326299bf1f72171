"""Turns the JSON Schema pydantic generates for a model into a Kubernetes structural schema:
references inlined, optional-null unions collapsed, every node typed, and every string, list and
map bounded (a missing bound is an error here rather than an unbounded CEL cost later)."""

from __future__ import annotations

import copy
import json
import re
from typing import Any

from pydantic import BaseModel

from .base import CEL_KEY

# Keys that carry over unchanged to the structural schema.
_PASSTHROUGH = {
    "description",
    "type",
    "format",
    "enum",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "minLength",
    "maxLength",
    "pattern",
    "minItems",
    "maxItems",
    "minProperties",
    "maxProperties",
    "required",
    CEL_KEY,
    "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys",
}
# Keys pydantic emits that a CRD does not need.
_DROPPED = {"title", "additionalProperties", "default", "examples"}


class SchemaError(ValueError):
    pass


def structural(model: type[BaseModel]) -> dict[str, Any]:
    raw = model.model_json_schema(by_alias=True, mode="validation")
    defs = raw.pop("$defs", {})
    return _convert(raw, defs, "")


def _resolve(node: dict[str, Any], defs: dict[str, Any], path: str) -> dict[str, Any]:
    """Inline $ref, allOf-of-one and optional (anyOf with null); sibling keys win."""
    node = dict(node)
    if "$ref" in node:
        target = copy.deepcopy(defs[node.pop("$ref").rsplit("/", 1)[-1]])
        node = _merge(target, node)
    if "allOf" in node:
        parts = node.pop("allOf")
        if len(parts) != 1:
            raise SchemaError(f"{path or '.'}: allOf with {len(parts)} parts is not supported")
        node = _merge(_resolve(parts[0], defs, path), node)
    if "anyOf" in node:
        options = [o for o in node.pop("anyOf") if o.get("type") != "null"]
        if len(options) != 1:
            raise SchemaError(f"{path or '.'}: unions of several types are not structural")
        node = _merge(_resolve(options[0], defs, path), node)
    if "const" in node:
        node["enum"] = [node.pop("const")]
    return node


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if key == CEL_KEY:
            out[CEL_KEY] = [*out.get(CEL_KEY, []), *value]
        elif key == "description" and "description" in out:
            continue  # the field's description is set by the caller below
        else:
            out[key] = value
    if "description" in extra:
        out["description"] = extra["description"]
    return out


def _convert(node: dict[str, Any], defs: dict[str, Any], path: str) -> dict[str, Any]:
    node = _resolve(node, defs, path)
    kind = node.get("type")
    if "enum" in node and kind is None:
        kinds = {type(v).__name__ for v in node["enum"]}
        kind = {"str": "string", "int": "integer", "bool": "boolean"}.get(kinds.pop()) if len(kinds) == 1 else None
    if kind is None:
        raise SchemaError(f"{path or '.'}: every node of a structural schema needs a type")

    out: dict[str, Any] = {"type": kind}
    for key, value in node.items():
        if key in _PASSTHROUGH:
            out[key] = value
        elif key not in _DROPPED and key not in {"properties", "items", "propertyNames"}:
            raise SchemaError(f"{path or '.'}: {key!r} has no structural equivalent")
    out["type"] = kind
    if "description" in out:
        out["description"] = _prose(out["description"])
    default = node.get("default")
    if default not in (None, "", [], {}) and not isinstance(default, dict):
        text = json.dumps(default)
        out["description"] = (out.get("description", "").rstrip(".") + f". Default: {text}.").lstrip(". ")

    if kind == "object":
        props = node.get("properties")
        extra = node.get("additionalProperties")
        if props is not None:
            out["properties"] = {k: _convert(v, defs, f"{path}.{k}") for k, v in props.items()}
        elif isinstance(extra, dict):
            if "maxProperties" not in node:
                raise SchemaError(f"{path or '.'}: map without maxProperties")
            out["additionalProperties"] = _convert(extra, defs, f"{path}[*]")
            if "propertyNames" in node:
                out[CEL_KEY] = [*out.get(CEL_KEY, []), *_key_rules(node["propertyNames"], path)]
    elif kind == "array":
        if "maxItems" not in node:
            raise SchemaError(f"{path or '.'}: list without maxItems")
        out["items"] = _convert(node["items"], defs, f"{path}[*]")
    elif kind == "string" and not ({"maxLength", "enum"} & node.keys() or node.get("format") == "date-time"):
        raise SchemaError(f"{path or '.'}: string without maxLength")
    return _ordered(out)


def _key_rules(names: dict[str, Any], path: str) -> list[dict[str, str]]:
    """Map key constraints (JSON Schema propertyNames) as CEL rules over the keys."""
    rules = []
    if "maxLength" in names:
        rules.append(
            {
                "rule": f"self.all(k, k.size() <= {names['maxLength']})",
                "message": f"keys may be at most {names['maxLength']} characters",
            }
        )
    for rule in names.get(CEL_KEY, []):
        text = rule["rule"]
        if not text.startswith("self.") or text.count("self") != 1:
            raise SchemaError(f"{path or '.'}: key rule {text!r} cannot be lifted to the map")
        rules.append({"rule": f"self.all(k, k.{text[len('self.') :]})", "message": f"keys {rule['message']}"})
    return rules


def _prose(text: str) -> str:
    """A description as `kubectl explain` should show it: a docstring's line breaks become spaces,
    and only blank lines still separate paragraphs."""
    paragraphs = re.split(r"\n\s*\n", text.strip())
    return "\n\n".join(" ".join(p.split()) for p in paragraphs)


_ORDER = ["description", "type", "format", "enum", "required", "properties", "additionalProperties", "items"]


def _ordered(node: dict[str, Any]) -> dict[str, Any]:
    """A stable, readable key order for the generated YAML."""
    head = {k: node[k] for k in _ORDER if k in node}
    tail = {k: node[k] for k in sorted(node) if k not in head}
    return head | tail
