"""Delays between attempts: exponential from a base, capped."""

from __future__ import annotations

from datetime import timedelta


def delay(failed_attempt: int, *, base: timedelta, cap: timedelta) -> timedelta:
    """The wait after attempt `failed_attempt` (1-based) failed: base, 2*base, 4*base ... <= cap."""
    return min(cap, base * (1 << max(0, failed_attempt - 1)))
