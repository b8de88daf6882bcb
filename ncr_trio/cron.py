"""Cron schedules, as the guide writes them: five fields in UTC, on croniter (kept by pallets-eco).

    field          values          special characters
    minute         0-59            * / , -
    hour           0-23            * / , -
    day of month   1-31            * / , - ?
    month          1-12, JAN-DEC   * / , -
    day of week    0-6, SUN-SAT    * / , - ?

`?` ("no specific value") is allowed in the two day fields only. Presets: None (never), Hourly,
Daily, Weekly (midnight UTC, Sunday). Nothing else (no seconds field, no L, W or #, no @macros)
is accepted: a schedule that means something else elsewhere is refused here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from croniter import CroniterBadDateError, croniter

PRESETS = {"hourly": "0 * * * *", "daily": "0 0 * * *", "weekly": "0 0 * * 0"}

_MONTHS = "JAN|FEB|MAR|APR|MAY|JUN|JUL|AUG|SEP|OCT|NOV|DEC"
_DAYS = "SUN|MON|TUE|WED|THU|FRI|SAT"
FIELDS = (  # (name, lowest, highest, names allowed, whether `?` is allowed)
    ("minute", 0, 59, None, False),
    ("hour", 0, 23, None, False),
    ("day of month", 1, 31, None, True),
    ("month", 1, 12, _MONTHS, False),
    ("day of week", 0, 6, _DAYS, True),
)


class InvalidSchedule(ValueError):
    pass


def _check_field(text: str, name: str, low: int, high: int, names: str | None, question: bool) -> None:
    if text == "?":
        if not question:
            raise InvalidSchedule(f"'?' is allowed only in the day-of-month and day-of-week fields, not in {name}")
        return
    value = rf"(?:\d+{'|' + names if names else ''})"
    item = rf"(?:\*|{value}(?:-{value})?)(?:/\d+)?"
    if re.fullmatch(rf"{item}(?:,{item})*", text, flags=re.IGNORECASE) is None:
        raise InvalidSchedule(f"invalid {name} field {text[:40]!r}")
    for number in re.findall(r"\d+", re.sub(r"/\d+", "", text)):
        if not low <= int(number) <= high:
            raise InvalidSchedule(f"{name} values are {low} to {high}, not {number}")
    for step in re.findall(r"/(\d+)", text):
        if int(step) == 0:
            raise InvalidSchedule(f"a step of 0 in the {name} field")


@dataclass(frozen=True)
class Schedule:
    """A validated schedule: `expression` is five cron fields, or "" for None (never runs)."""

    expression: str

    @property
    def never(self) -> bool:
        return not self.expression

    def next_after(self, moment: datetime) -> datetime | None:
        """The first run strictly after `moment` (UTC), or None for a schedule that never runs."""
        if self.never:
            return None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        nxt: datetime = croniter(self.expression, moment.astimezone(UTC)).get_next(datetime)
        return nxt.astimezone(UTC)

    def next_at(self, after: float) -> float | None:
        """`next_after` in Unix seconds."""
        nxt = self.next_after(datetime.fromtimestamp(after, UTC))
        return None if nxt is None else nxt.timestamp()

    def due_between(self, after: datetime, until: datetime) -> bool:
        """Whether a run was due in (after, until]: a job missed while the server was down runs once."""
        nxt = self.next_after(after)
        return nxt is not None and nxt <= until


def parse_schedule(text: str | None) -> Schedule:
    """A preset name (None, Hourly, Daily, Weekly) or five cron fields."""
    if text is None or text.strip().lower() in ("", "none"):
        return Schedule("")
    stripped = " ".join(text.split())
    preset = PRESETS.get(stripped.lower())
    if preset is not None:
        return Schedule(preset)
    fields = stripped.split(" ")
    if len(fields) != 5:
        raise InvalidSchedule(f"a schedule is a preset (None, Hourly, Daily, Weekly) or five cron fields, "
                              f"not {len(fields)}")
    for field_text, (name, low, high, names, question) in zip(fields, FIELDS, strict=True):
        _check_field(field_text, name, low, high, names, question)
    if fields[2] == "?" and fields[4] == "?":
        raise InvalidSchedule("'?' may stand in one of the day fields, not both")
    expression = " ".join(fields).upper()
    if not croniter.is_valid(expression):
        raise InvalidSchedule(f"invalid schedule {stripped[:80]!r}")
    try:  # fields that never meet (February 31st) make croniter give up looking for the next run
        croniter(expression, datetime(2000, 1, 1, tzinfo=UTC)).get_next(datetime)
    except CroniterBadDateError:
        raise InvalidSchedule(f"schedule {stripped[:80]!r} matches no date") from None
    return Schedule(expression)


__all__ = ["FIELDS", "PRESETS", "InvalidSchedule", "Schedule", "parse_schedule"]
