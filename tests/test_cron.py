"""Cron schedules against the guide's table: fields, ranges, special characters, names, presets, UTC."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from ncr_trio.cron import InvalidSchedule, parse_schedule

T0 = datetime(2026, 11, 29, 8, 7, tzinfo=UTC)  # a Sunday


def nexts(expr: str, n: int = 3, start: datetime = T0) -> list[str]:
    s = parse_schedule(expr)
    out, t = [], start
    for _ in range(n):
        nxt = s.next_after(t)
        assert nxt is not None
        out.append(nxt.strftime("%a %Y-%m-%d %H:%M"))
        t = nxt
    return out


@pytest.mark.parametrize(("expr", "expected"), [
    ("* * * * *", ["Sun 2026-11-29 08:08", "Sun 2026-11-29 08:09", "Sun 2026-11-29 08:10"]),
    ("*/15 * * * *", ["Sun 2026-11-29 08:15", "Sun 2026-11-29 08:30", "Sun 2026-11-29 08:45"]),
    ("0,30 9-10 * * *", ["Sun 2026-11-29 09:00", "Sun 2026-11-29 09:30", "Sun 2026-11-29 10:00"]),
    ("0 3 ? * MON-FRI", ["Mon 2026-11-30 03:00", "Tue 2026-12-01 03:00", "Wed 2026-12-02 03:00"]),
    ("0 0 1 JAN,JUL ?", ["Fri 2027-01-01 00:00", "Thu 2027-07-01 00:00", "Sat 2028-01-01 00:00"]),
    ("30 2 */10 * ?", ["Tue 2026-12-01 02:30", "Fri 2026-12-11 02:30", "Mon 2026-12-21 02:30"]),
    ("0 12 * DEC SAT,SUN", ["Sat 2026-12-05 12:00", "Sun 2026-12-06 12:00", "Sat 2026-12-12 12:00"]),
    ("0 0 * * 0", ["Sun 2026-12-06 00:00", "Sun 2026-12-13 00:00", "Sun 2026-12-20 00:00"]),
    ("59 23 31 12 *", ["Thu 2026-12-31 23:59", "Fri 2027-12-31 23:59", "Sun 2028-12-31 23:59"]),
    ("0 0 * feb mon", ["Mon 2027-02-01 00:00", "Mon 2027-02-08 00:00", "Mon 2027-02-15 00:00"]),
    ("Hourly", ["Sun 2026-11-29 09:00", "Sun 2026-11-29 10:00", "Sun 2026-11-29 11:00"]),
    ("daily", ["Mon 2026-11-30 00:00", "Tue 2026-12-01 00:00", "Wed 2026-12-02 00:00"]),
    ("WEEKLY", ["Sun 2026-12-06 00:00", "Sun 2026-12-13 00:00", "Sun 2026-12-20 00:00"]),
])
def test_next_runs(expr: str, expected: list[str]) -> None:
    assert nexts(expr) == expected


def test_none_preset_never_runs() -> None:
    for text in (None, "", "None", "none"):
        s = parse_schedule(text)
        assert s.never and s.next_after(T0) is None and not s.due_between(T0, T0 + timedelta(days=400))


def test_schedules_are_utc_whatever_the_input_zone() -> None:
    tokyo = timezone(timedelta(hours=9))
    nxt = parse_schedule("0 3 * * *").next_after(datetime(2026, 11, 29, 11, 0, tzinfo=tokyo))  # 02:00 UTC
    assert nxt == datetime(2026, 11, 29, 3, 0, tzinfo=UTC)
    assert parse_schedule("0 3 * * *").next_after(datetime(2026, 11, 29, 2, 0)) == nxt  # naive means UTC


def test_missed_runs_are_due_once() -> None:
    s = parse_schedule("0 * * * *")
    assert s.due_between(T0, T0 + timedelta(hours=5))  # five runs missed: due (once)
    assert not s.due_between(T0, T0 + timedelta(minutes=50))


@pytest.mark.parametrize("expr", [
    "* * * *", "* * * * * *", "60 * * * *", "* 24 * * *", "* * 0 * *", "* * 32 * *", "* * * 13 *",
    "* * * * 7x", "? * * * *", "* ? * * *", "* * * ? *", "* * ? * ?", "*/0 * * * *", "L * * * *",
    "* * L * *", "* * * * 5#2", "* * 15W * *", "@daily", "0 0 * * MON-", "a b c d e", "1-2-3 * * * *",
    "* * * JANUARY *", "Monthly",
])
def test_invalid_schedules_are_refused(expr: str) -> None:
    with pytest.raises(InvalidSchedule):
        parse_schedule(expr)
