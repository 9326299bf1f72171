"""Building blocks of the API: the model base class, CEL rules declared once for both the
API server and Python, and bounded string types."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import core_schema

CEL_KEY = "x-kubernetes-validations"


@dataclass(frozen=True)
class Rule:
    """A validation rule that the API server enforces as CEL and the models enforce in Python.

    `check` mirrors `cel` on the parsed model; it is None for transition rules (`oldSelf`),
    which only the API server can evaluate.
    """

    cel: str
    message: str
    check: Callable[[Any], bool] | None = None
    field_path: str | None = None

    def as_schema(self) -> dict[str, str]:
        out = {"rule": self.cel, "message": self.message}
        if self.field_path:
            out["fieldPath"] = self.field_path
        return out


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
    def __get_pydantic_json_schema__(
        cls, core: core_schema.CoreSchema, handler: Any
    ) -> JsonSchemaValue:
        schema: dict[str, Any] = handler(core)
        if cls.rules:
            target = handler.resolve_ref_schema(schema)
            target[CEL_KEY] = [r.as_schema() for r in cls.rules]
        return schema

    def wire(self) -> dict[str, Any]:
        """The object as the API server stores it: camelCase keys, unset fields left out."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


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


def formatted(
    regex: str,
    message: str,
    *,
    max_length: int,
    min_length: int = 1,
    extra_check: Callable[[str], str | None] | None = None,
) -> Any:
    """A string type matched by `regex` in both layers, with a message saying what is expected.

    `extra_check` adds a Python-only check (e.g. cron field ranges) and returns an error or None.
    """
    compiled = re.compile(regex)

    def check(value: str) -> str:
        if not compiled.fullmatch(value):
            raise ValueError(message)
        if extra_check is not None and (error := extra_check(value)):
            raise ValueError(error)
        return value

    return Annotated[
        str,
        Field(
            min_length=min_length,
            max_length=max_length,
            json_schema_extra={CEL_KEY: [{"rule": f"self.matches(r'{regex}')", "message": message}]},
        ),
        AfterValidator(check),
    ]


def bounded_map(max_items: int, key_max: int, value_max: int) -> Any:
    """A string-to-string map with bounded keys, values and size."""
    return Annotated[
        dict[str, Annotated[str, Field(max_length=value_max)]],
        Field(
            max_length=max_items,
            json_schema_extra={
                CEL_KEY: [
                    {
                        "rule": f"self.all(k, k.size() >= 1 && k.size() <= {key_max})",
                        "message": f"keys must be 1 to {key_max} characters long",
                    }
                ]
            },
        ),
        AfterValidator(lambda v: _check_keys(v, key_max)),
    ]


def _check_keys(value: dict[str, str], key_max: int) -> dict[str, str]:
    for key in value:
        if not 1 <= len(key) <= key_max:
            raise ValueError(f"keys must be 1 to {key_max} characters long")
    return value


# Kubernetes object names.
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
ObjectName = formatted(
    DNS_SUBDOMAIN,
    "must be a Kubernetes object name: lowercase letters, digits, '-' and '.'",
    max_length=253,
)
ConfigKey = formatted(
    r"^[-._a-zA-Z0-9]+$",
    "must be a ConfigMap or Secret key: letters, digits, '-', '_' and '.'",
    max_length=253,
)
