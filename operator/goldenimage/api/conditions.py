"""Standard Kubernetes conditions (metav1.Condition) and the pure helpers that set them."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field

from .base import Format, Model
from .types import ConditionMessage

ConditionType = Annotated[
    str,
    Format(
        r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$",
        "must be a condition type such as Ready",
        max_length=316,
    ),
]
Reason = Annotated[
    str,
    Format(
        r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$",
        "must be a CamelCase reason such as BuildFailed",
        max_length=1024,
    ),
]


class Condition(Model):
    """One aspect of the object's state, as a standard Kubernetes condition (metav1.Condition)."""

    type: ConditionType = Field(description="What the condition is about, e.g. Ready.")
    status: Literal["True", "False", "Unknown"] = Field(description="Whether the condition holds.")
    reason: Reason = Field(description="Why it has its status, as one CamelCase word, e.g. BuildFailed.")
    message: ConditionMessage = Field("", description="Details for people to read.")
    last_transition_time: datetime = Field(description="When the status last changed.")
    observed_generation: Annotated[int, Field(ge=0)] | None = Field(
        None, description="The object's metadata.generation the condition was set for."
    )


ConditionList = Annotated[
    list[Condition],
    Field(
        max_length=16,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    ),
]


def set_condition(
    conditions: Sequence[Condition],
    type_: str,
    status: Literal["True", "False", "Unknown"],
    reason: str,
    message: str,
    now: datetime,
    generation: int | None = None,
) -> list[Condition]:
    """Return the conditions with one set; the transition time moves only when the status does."""
    old = find(conditions, type_)
    since = old.last_transition_time if old is not None and old.status == status else now
    new = Condition(
        type=type_,
        status=status,
        reason=reason,
        message=message[:32768],  # validated here; later copies are clipped when written
        last_transition_time=since,
        observed_generation=generation,
    )
    return [new if c.type == type_ else c for c in conditions] if old is not None else [*conditions, new]


def find(conditions: Sequence[Condition], type_: str) -> Condition | None:
    return next((c for c in conditions if c.type == type_), None)


def is_true(conditions: Sequence[Condition], type_: str) -> bool:
    found = find(conditions, type_)
    return found is not None and found.status == "True"
