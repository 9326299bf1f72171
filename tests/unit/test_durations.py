from __future__ import annotations

from datetime import timedelta

import pytest

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
