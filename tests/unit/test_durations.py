from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from goldenimage.api import durations


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("30m", 1800), ("24h", 86400), ("7d", 604800), ("1h30m", 5400), ("1d12h", 129600)],
)
def test_parse(text: str, seconds: int) -> None:
    assert durations.parse(text) == timedelta(seconds=seconds)
    assert durations.parse(durations.format_seconds(seconds)) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "20", "20 minutes", "1.5h", "-5m", "1w", "30days", "h"])
def test_invalid(text: str) -> None:
    with pytest.raises(ValueError, match="must be a duration"):
        durations.parse(text)


@given(st.from_regex(durations.PATTERN, fullmatch=True))
def test_every_admitted_duration_fits_in_date_arithmetic(text: str) -> None:
    # Whatever a spec says, adding it to any date of this century and subtracting it stays a date,
    # so no planner's clock can overflow.
    assert durations.parse(text) <= durations.LONGEST
    far = datetime(2199, 12, 31, tzinfo=UTC)
    assert far + durations.LONGEST < datetime.max.replace(tzinfo=UTC)
    assert datetime(2000, 1, 1, tzinfo=UTC) - durations.LONGEST > datetime.min.replace(tzinfo=UTC)


def test_the_longest_admitted_duration_is_the_bound() -> None:
    assert durations.parse("9999d9999d9999d9999d") == durations.LONGEST
    with pytest.raises(ValueError, match="at most 4 parts"):
        durations.parse("10000d")
