"""The result a runner Job leaves in its termination message: small, versioned JSON that the
operator parses. The kubelet keeps at most 4 KiB of a termination message, so encoding refuses
to exceed that rather than be cut off mid-way."""

from __future__ import annotations

import json
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

MAX_BYTES = 4096
VERSION = 1


class _Wire(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


class Artifact(_Wire):
    region: str = Field("", max_length=64, description="Empty when the cloud's id carries no region.")
    id: str = Field(min_length=1, max_length=1024)


class CheckOutcome(_Wire):
    name: str = Field(max_length=63)
    passed: bool
    message: str = Field("", max_length=1024)


class Result(_Wire):
    v: Literal[1] = 1
    kind: Literal["build", "validate"] = "build"
    ok: bool
    artifacts: list[Artifact] = Field(default_factory=list, max_length=64)
    checks: list[CheckOutcome] = Field(default_factory=list, max_length=32)
    packer_version: str = Field("", max_length=64)
    run_uuid: str = Field("", max_length=64)
    duration_seconds: float = 0.0
    error_class: Literal["Permanent", "Retryable"] | None = None
    message: str = ""  # shortened by encode() to fit the limit


class ResultError(ValueError):
    """A termination message that is not a usable result; the message says why."""


def encode(result: Result) -> str:
    """Compact JSON of at most MAX_BYTES; the free-text message is shortened to fit, nothing else."""
    text = _dump(result)
    if len(text.encode()) <= MAX_BYTES:
        return text
    over = len(text.encode()) - MAX_BYTES
    message = result.message.encode()[: max(0, len(result.message.encode()) - over - 16)].decode(errors="ignore")
    shortened = result.model_copy(update={"message": message + " [truncated]"})
    text = _dump(shortened)
    if len(text.encode()) > MAX_BYTES:
        raise ResultError(f"the result is {len(text.encode())} bytes even without its message (limit {MAX_BYTES})")
    return text


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
