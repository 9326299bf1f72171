"""Durations as users write them in specs: whole numbers of seconds, minutes, hours and days,
optionally combined (`90s`, `30m`, `24h`, `7d`, `1h30m`)."""

from __future__ import annotations

import re
from datetime import timedelta

# Bounded by its form, so that schema and models refuse the same and nothing that adds a duration
# to a date can overflow: at most four parts of 999999s or m, 99999h or 9999d (about 110 years).
PATTERN = r"^([0-9]{1,6}[sm]|[0-9]{1,5}h|[0-9]{1,4}d){1,4}$"
MESSAGE = (
    "must be a duration such as 90s, 30m, 24h, 7d or 1h30m "
    "(at most 4 parts; at most 6 digits of s or m, 5 of h and 4 of d)"
)
LONGEST = timedelta(days=4 * 9999)

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_PART = re.compile(r"([0-9]+)([smhd])")


def parse(text: str) -> timedelta:
    """Parse a duration; raises ValueError naming the expected form."""
    if not re.fullmatch(PATTERN, text):
        raise ValueError(f"{text!r} {MESSAGE}")
    return timedelta(seconds=sum(int(n) * _UNITS[u] for n, u in _PART.findall(text)))


def format_seconds(seconds: float) -> str:
    """The shortest spec form of a whole number of seconds (for messages and defaults)."""
    whole = int(seconds)
    if whole <= 0:
        return "0s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, whole = divmod(whole, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)
