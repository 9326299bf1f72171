"""Readable validation errors: each names the field on the wire (camelCase, with list indexes)."""

from __future__ import annotations

from pydantic import ValidationError


def field_path(loc: tuple[str | int, ...]) -> str:
    """('spec', 'targets', 0, 'aws') -> 'spec.targets[0].aws'"""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


def describe(error: ValidationError, *, prefix: str = "") -> list[tuple[str, str]]:
    """(field, message) for every problem, in the order pydantic found them."""
    found = []
    for item in error.errors(include_url=False):
        loc = tuple(p for p in item["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        path = field_path(loc)
        if prefix:
            path = f"{prefix}.{path}" if path else prefix
        message = item["msg"].removeprefix("Value error, ")
        found.append((path or "(object)", message))
    return found


def summary(error: ValidationError, *, prefix: str = "", limit: int = 5) -> str:
    """One line for a condition message: 'spec.x: problem; spec.y: problem (and 2 more)'."""
    problems = describe(error, prefix=prefix)
    text = "; ".join(f"{path}: {message}" for path, message in problems[:limit])
    if len(problems) > limit:
        text += f" (and {len(problems) - limit} more)"
    return text
