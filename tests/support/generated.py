"""How long generated tests search: a few hundred examples in CI; `GOLDENIMAGE_EXAMPLES=10000`
for a longer search."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings


def examples(default: int = 200) -> int:
    return int(os.environ.get("GOLDENIMAGE_EXAMPLES", str(default)))


def search(default: int = 200, **more: object) -> settings:
    """Settings for a generated test: no per-example deadline (a planner pass with many steps
    may take a while on a busy machine), slow generation allowed."""
    return settings(
        max_examples=examples(default),
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
        **more,  # type: ignore[arg-type]
    )
