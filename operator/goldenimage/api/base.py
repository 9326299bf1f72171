"""Building blocks of the API: the model base class, CEL rules declared once for both the
API server and Python, and bounded string types."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar

from pydantic import BaseModel, ConfigDict, model_validator
from pydantic.alias_generators import to_camel
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import core_schema

CEL_KEY = "x-kubernetes-validations"


@dataclass(frozen=True)
class Rule:
    """A validation rule that the API server enforces as CEL and the models enforce in Python.

    `check` mirrors `cel` on the parsed model; it is None for transition rules (`oldSelf`),
    which only the API server can evaluate. `field_path` (e.g. `.spec.version`, relative to the
    node the rule is on) is where the API server reports a failure; without it the failure is
    reported at the node itself, which at the object's root has no path at all (`<nil>`).
    """

    cel: str
    message: str
    check: Callable[[Any], bool] | None = None
    field_path: str | None = None

    def as_schema(self) -> dict[str, str]:
        schema = {"rule": self.cel, "message": self.message}
        if self.field_path is not None:
            schema["fieldPath"] = self.field_path
        return schema


class Model(BaseModel):
    """Base of every API model: camelCase on the wire, unknown fields rejected, rules attached."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        serialize_by_alias=True,
    )

    # Rules on the object as a whole (CEL `self` is this object).
    rules: ClassVar[tuple[Rule, ...]] = ()

    @model_validator(mode="after")
    def _check_rules(self) -> Model:
        for rule in type(self).rules:
            if rule.check is not None and not rule.check(self):
                raise ValueError(rule.message)
        return self

    @classmethod
    def __get_pydantic_json_schema__(cls, core: core_schema.CoreSchema, handler: Any) -> JsonSchemaValue:
        schema: dict[str, Any] = handler(core)
        if cls.rules:
            target = handler.resolve_ref_schema(schema)
            target[CEL_KEY] = [*target.get(CEL_KEY, []), *(r.as_schema() for r in cls.rules)]
        return schema

    def wire(self) -> dict[str, Any]:
        """The object as the API server stores it: camelCase keys, unset fields left out."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


@dataclass(frozen=True)
class FieldRule:
    """A rule on one field, used as Annotated metadata: CEL on the field's schema, the same
    check as an after-validator, so both layers report it at the field's own path."""

    cel: str
    message: str
    check: Callable[[Any], bool]

    def __get_pydantic_core_schema__(self, source: Any, handler: Any) -> core_schema.CoreSchema:
        def validate(value: Any) -> Any:
            if not self.check(value):
                raise ValueError(self.message)
            return value

        return core_schema.no_info_after_validator_function(validate, handler(source))

    def __get_pydantic_json_schema__(self, schema: core_schema.CoreSchema, handler: Any) -> JsonSchemaValue:
        out: dict[str, Any] = handler(schema)
        out[CEL_KEY] = [*out.get(CEL_KEY, []), {"rule": self.cel, "message": self.message}]
        return out


def unique_by(key: str, *, message: str) -> FieldRule:
    """List items are unique by the field `key` (Python name; optional keys may be absent)."""
    wire = to_camel(key)
    return FieldRule(
        f"self.all(a, !has(a.{wire}) || self.exists_one(b, has(b.{wire}) && b.{wire} == a.{wire}))",
        message,
        lambda items: len(keys := [getattr(i, key) for i in items if getattr(i, key) is not None]) == len(set(keys)),
    )


def _alias(field: str) -> str:
    return to_camel(field)


def exactly_one_of(*fields: str, message: str) -> Rule:
    """Exactly one of the optional fields (Python names) is set."""
    cel = " + ".join(f"(has(self.{_alias(f)}) ? 1 : 0)" for f in fields) + " == 1"
    return Rule(cel, message, lambda m: sum(getattr(m, f) is not None for f in fields) == 1)


def at_most_one_of(*fields: str, message: str) -> Rule:
    cel = " + ".join(f"(has(self.{_alias(f)}) ? 1 : 0)" for f in fields) + " <= 1"
    return Rule(cel, message, lambda m: sum(getattr(m, f) is not None for f in fields) <= 1)


def immutable(message: str) -> Rule:
    """A transition rule: the value may not change once set."""
    return Rule("self == oldSelf", message)


@dataclass(frozen=True)
class Format:
    """Annotated metadata for a string matched by `regex` in both layers, with a message saying
    what is expected; `extra_check` adds a Python-only check returning an error or None."""

    regex: str
    message: str
    max_length: int
    min_length: int = 1
    extra_check: Callable[[str], str | None] | None = None

    def __get_pydantic_core_schema__(self, source: Any, handler: Any) -> core_schema.CoreSchema:
        compiled = re.compile(self.regex)

        def validate(value: str) -> str:
            if not compiled.fullmatch(value):
                raise ValueError(self.message)
            if self.extra_check is not None and (error := self.extra_check(value)):
                raise ValueError(error)
            return value

        inner = core_schema.str_schema(min_length=self.min_length, max_length=self.max_length)
        return core_schema.no_info_after_validator_function(validate, inner)

    def __get_pydantic_json_schema__(self, schema: core_schema.CoreSchema, handler: Any) -> JsonSchemaValue:
        out: dict[str, Any] = handler(schema)
        out[CEL_KEY] = [*out.get(CEL_KEY, []), {"rule": f"self.matches(r'{self.regex}')", "message": self.message}]
        return out


NOT_A_TEMPLATE = "may not contain '{{': Packer would read it as its own template syntax"

# A string Packer receives as text: `{{` would make it a Go template.
no_template_text = FieldRule("!self.contains('{{')", NOT_A_TEMPLATE, lambda value: "{{" not in value)
# The same for every key and value of a map.
no_template_map = FieldRule(
    "self.all(k, !k.contains('{{') && !self[k].contains('{{'))",
    NOT_A_TEMPLATE,
    lambda value: not any("{{" in k or "{{" in v for k, v in value.items()),
)


def keys_at_most(length: int) -> FieldRule:
    """Map keys of 1 to `length` characters."""
    return FieldRule(
        f"self.all(k, k.size() >= 1 && k.size() <= {length})",
        f"keys must be 1 to {length} characters long",
        lambda value: all(1 <= len(k) <= length for k in value),
    )


# Kubernetes object names.
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
ObjectName = Annotated[
    str,
    Format(DNS_SUBDOMAIN, "must be a Kubernetes object name: lowercase letters, digits, '-' and '.'", 253),
]
ConfigKey = Annotated[
    str,
    Format(r"^[-._a-zA-Z0-9]+$", "must be a ConfigMap or Secret key: letters, digits, '-', '_' and '.'", 253),
]
