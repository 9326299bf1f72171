"""Five-field cron expressions (minute hour day-of-month month day-of-week) in UTC, as used by
`spec.rebuild.schedule`: parsing with range checks, and the next fire time after an instant."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

_ITEM = r"(\*|[0-9A-Za-z]+(-[0-9A-Za-z]+)?)(/[0-9]+)?"
_FIELD = rf"{_ITEM}(,{_ITEM})*"
# Rebuilds are at most hourly (each is a whole build and boot test): the minute is one number.
_MINUTE = r"[0-9]{1,2}"
# The shape the API server can check with CEL; ranges and names are checked in Python.
PATTERN = rf"^(@(yearly|annually|monthly|weekly|daily|midnight|hourly)|{_MINUTE}(\s+{_FIELD}){{4}})$"
MESSAGE = (
    "must be a cron expression with five fields (minute hour day-of-month month day-of-week) "
    "firing at most hourly, so with one minute, such as '0 3 * * 0', or a macro such as @daily"
)

_MONTHS = {
    name: number
    for number, name in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), start=1
    )
}
_DAYS = {d: i for i, d in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])}
_FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day-of-month", 1, 31, {}),
    ("month", 1, 12, _MONTHS),
    ("day-of-week", 0, 7, _DAYS),
)


@dataclass(frozen=True)
class Schedule:
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    # Standard cron: when both day fields are restricted, a day matches either of them.
    days_restricted: bool
    weekdays_restricted: bool

    def matches_day(self, when: datetime) -> bool:
        dom = when.day in self.days
        dow = (when.isoweekday() % 7) in self.weekdays
        if self.days_restricted and self.weekdays_restricted:
            return dom or dow
        return dom and dow

    def next_after(self, instant: datetime) -> datetime:
        """The first fire time strictly after `instant` (minute resolution, same tzinfo)."""
        when = instant.replace(second=0, microsecond=0) + timedelta(minutes=1)
        # Eight years cover every valid combination, including 29 February on a weekday.
        limit = when + timedelta(days=366 * 8)
        while when < limit:
            if when.month not in self.months:
                month = when.month + 1
                year = when.year + (month > 12)
                when = when.replace(year=year, month=(month - 1) % 12 + 1, day=1, hour=0, minute=0)
                continue
            if not self.matches_day(when):
                when = when.replace(hour=0, minute=0) + timedelta(days=1)
                continue
            if when.hour not in self.hours:
                when = when.replace(minute=0) + timedelta(hours=1)
                continue
            if when.minute not in self.minutes:
                when += timedelta(minutes=1)
                continue
            return when
        raise ValueError("the schedule never fires")


def _value(token: str, names: dict[str, int], field: str) -> int:
    lowered = token.lower()
    if lowered in names:
        return names[lowered]
    if not token.isdigit():
        raise ValueError(f"{field}: {token!r} is not a number" + (" or a name" if names else ""))
    return int(token)


def _parse_field(text: str, field: str, low: int, high: int, names: dict[str, int]) -> frozenset[int]:
    values: set[int] = set()
    for item in text.split(","):
        base, _, step_text = item.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) == 0:
                raise ValueError(f"{field}: step {step_text!r} must be a positive number")
            step = int(step_text)
        if base == "*":
            start, end = low, high
        else:
            first, _, last = base.partition("-")
            start = _value(first, names, field)
            end = _value(last, names, field) if last else (high if step_text else start)
        for bound in (start, end):
            if not low <= bound <= high:
                raise ValueError(f"{field}: {bound} is outside {low}-{high}")
        if start > end:
            raise ValueError(f"{field}: range {base!r} runs backwards")
        values.update(range(start, end + 1, step))
    return frozenset(values)


def parse(expression: str) -> Schedule:
    """Parse a cron expression; raises ValueError saying which field is wrong."""
    text = MACROS.get(expression.strip().lower(), expression)
    parts = text.split()
    if len(parts) != 5:
        raise ValueError(f"{expression!r} {MESSAGE}")
    sets = [
        _parse_field(part, name, low, high, names)
        for part, (name, low, high, names) in zip(parts, _FIELDS, strict=True)
    ]
    weekdays = frozenset(d % 7 for d in sets[4])  # 7 is Sunday too
    return Schedule(
        minutes=sets[0],
        hours=sets[1],
        days=sets[2],
        months=sets[3],
        weekdays=weekdays,
        days_restricted=not parts[2].startswith("*"),
        weekdays_restricted=not parts[4].startswith("*"),
    )


def check(expression: str) -> str | None:
    """An error message for an invalid expression, or None."""
    try:
        schedule = parse(expression)
        schedule.next_after(datetime(2000, 1, 1))
    except ValueError as exc:
        return str(exc)
    if len(schedule.minutes) != 1:
        return "minute: fires more than once an hour; rebuilds are at most hourly, so name one minute"
    return None
