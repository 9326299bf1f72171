from __future__ import annotations

from datetime import UTC, datetime

import pytest

from goldenimage.api import cron


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        ("0 3 * * 0", "2026-11-21T10:00:00", "2026-11-22T03:00:00"),  # Saturday -> Sunday 03:00
        ("0 3 * * 0", "2026-11-22T03:00:00", "2026-11-29T03:00:00"),  # strictly after
        ("*/15 * * * *", "2026-11-21T10:07:30", "2026-11-21T10:15:00"),
        ("30 2 1 * *", "2026-11-21T00:00:00", "2026-12-01T02:30:00"),
        ("0 0 29 2 *", "2026-03-01T00:00:00", "2028-02-29T00:00:00"),  # leap day
        ("0 12 * * mon-fri", "2026-11-21T13:00:00", "2026-11-23T12:00:00"),
        ("0 0 1 jan *", "2026-06-01T00:00:00", "2027-01-01T00:00:00"),
        ("@daily", "2026-11-21T10:00:00", "2026-11-22T00:00:00"),
        ("@weekly", "2026-11-21T10:00:00", "2026-11-22T00:00:00"),
        ("0 0 * * 7", "2026-11-21T10:00:00", "2026-11-22T00:00:00"),  # 7 is Sunday
        # Both day fields restricted: either matches (the 13th, or any Friday).
        ("0 0 13 * 5", "2026-11-21T10:00:00", "2026-11-27T00:00:00"),
        ("59 23 31 12 *", "2026-11-21T10:00:00", "2026-12-31T23:59:00"),
    ],
)
def test_next_after(expression: str, after: str, expected: str) -> None:
    assert cron.parse(expression).next_after(at(after)) == at(expected)


@pytest.mark.parametrize(
    ("expression", "error"),
    [
        ("61 3 * * *", "minute: 61 is outside 0-59"),
        ("0 24 * * *", "hour: 24 is outside 0-23"),
        ("0 0 0 * *", "day-of-month: 0 is outside 1-31"),
        ("0 0 * 13 *", "month: 13 is outside 1-12"),
        ("0 0 * * 8", "day-of-week: 8 is outside 0-7"),
        ("0 0 * * funday", "not a number or a name"),
        ("5-1 * * * *", "runs backwards"),
        ("*/0 * * * *", "step '0' must be a positive number"),
        ("0 3 * *", "five fields"),
        ("0 0 31 2 *", "never fires"),
        ("*/15 * * * *", "at most hourly"),
        ("0,30 3 * * *", "at most hourly"),
        ("0-59 3 * * *", "at most hourly"),
    ],
)
def test_invalid(expression: str, error: str) -> None:
    assert (message := cron.check(expression)) is not None and error in message


def test_pattern_accepts_what_python_accepts() -> None:
    import re

    for expression in ("0 3 * * 0", "15 1-5,7 * jan-mar mon", "@hourly", "0 0 1,15 * *", "5 */2 * * *"):
        assert re.fullmatch(cron.PATTERN, expression), expression
        assert cron.check(expression) is None
    # More than once an hour: refused by the pattern too, so the API server refuses it.
    for expression in ("* * * * *", "*/5 * * * *", "0,30 * * * *"):
        assert not re.fullmatch(cron.PATTERN, expression), expression
