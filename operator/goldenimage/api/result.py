"""The contract between the runner and the operator: the result a runner Job leaves in its
termination message, small versioned JSON that the operator parses. The kubelet keeps at most
4 KiB of a termination message, so encoding refuses to exceed that rather than be cut off
mid-way."""

from __future__ import annotations

import json
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

MAX_BYTES = 4096
VERSION = 1


class _Wire(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


class ReportedArtifact(_Wire):
    region: str = Field("", max_length=64, description="Empty when the cloud's id carries no region.")
    id: str = Field(min_length=1, max_length=1024)
    state: str = Field("", max_length=64, description="The cloud's word on it in this region, if any.")


class CheckOutcome(_Wire):
    name: str = Field(max_length=63)
    passed: bool
    message: str = Field("", max_length=1024)


class Result(_Wire):
    v: Literal[1] = 1
    kind: Literal["build", "validate"] = "build"
    ok: bool
    artifacts: list[ReportedArtifact] = Field(default_factory=list, max_length=64)
    checks: list[CheckOutcome] = Field(default_factory=list, max_length=32)
    packer_version: str = Field("", max_length=64)
    run_uuid: str = Field("", max_length=64)
    duration_seconds: float = 0.0
    error_class: Literal["Permanent", "Retryable"] | None = None
    message: str = ""  # shortened by encode() to fit the limit


class ResultError(ValueError):
    """A termination message that is not a usable result; the message says why."""


def encode(result: Result) -> str:
    """Compact JSON of at most MAX_BYTES. Free text (the message, then the checks' messages) is
    shortened to fit; artifacts never are."""
    text = _dump(result)
    if len(text.encode()) <= MAX_BYTES:
        return text
    fitted = _fit(result, "message")
    if len(_dump(fitted).encode()) > MAX_BYTES:
        fitted = _fit(fitted.model_copy(update={"message": ""}), "checks")
    text = _dump(fitted)
    if len(text.encode()) > MAX_BYTES:
        raise ResultError(f"the result is {len(text.encode())} bytes even without its messages (limit {MAX_BYTES})")
    return text


def _fit(result: Result, field: str) -> Result:
    """The longest cut of `field`'s text that keeps the dump within MAX_BYTES (binary search on
    the dumped size, so escaping and non-ASCII text are counted as they are sent)."""

    def cut(keep: int) -> Result:
        if field == "message":
            shortened = result.message[:keep]
            return result.model_copy(
                update={"message": shortened + (" [truncated]" if keep < len(result.message) else "")}
            )
        checks = [c.model_copy(update={"message": c.message[:keep]}) for c in result.checks]
        return result.model_copy(update={"checks": checks})

    longest = len(result.message) if field == "message" else max((len(c.message) for c in result.checks), default=0)
    low, high = 0, longest
    while low < high:
        middle = (low + high + 1) // 2
        if len(_dump(cut(middle)).encode()) <= MAX_BYTES:
            low = middle
        else:
            high = middle - 1
    return cut(low)


def _dump(result: Result) -> str:
    return json.dumps(result.model_dump(mode="json", by_alias=True, exclude_defaults=False), separators=(",", ":"))


def decode(text: str | None) -> Result:
    if not text:
        raise ResultError("the Job left no result")
    if len(text.encode()) > MAX_BYTES:
        raise ResultError(f"the result is {len(text.encode())} bytes, over the {MAX_BYTES}-byte limit")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ResultError(f"the result is not JSON ({exc.msg} at position {exc.pos}); it may be truncated") from exc
    if not isinstance(data, dict):
        raise ResultError("the result is not a JSON object")
    if data.get("v") != VERSION:
        raise ResultError(f"the result has version {data.get('v')!r}; this operator reads version {VERSION}")
    try:
        return Result.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ResultError(f"the result is malformed: {where}: {first['msg']}") from exc
