"""Weekly schedules: windows across midnight, DST changes (zoneinfo) and holidays."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from facegate.handlers.access import Schedule, ScheduleError, parse_window

BERLIN = ZoneInfo("Europe/Berlin")


def at(tz: ZoneInfo, *args: int) -> float:
    return dt.datetime(*args, tzinfo=tz).timestamp()  # type: ignore[misc]  # y, m, d, H, M


def utc(*args: int) -> float:
    return dt.datetime(*args, tzinfo=dt.UTC).timestamp()  # type: ignore[misc]  # y, m, d, H, M


def test_window_syntax_and_errors() -> None:
    w = parse_window("mon-fri 07:00-19:00")
    assert w.days == frozenset(range(5)) and (w.start, w.end) == (420, 1140) and not w.overnight
    assert parse_window("fri-mon 22:00-06:00").days == frozenset({4, 5, 6, 0})
    assert parse_window("sat,sun 00:00-24:00").end == 1440
    for bad in ("mon 7-19", "moon 07:00-19:00", "mon 07:00-24:01", "mon 07:60-08:00"):
        with pytest.raises(ScheduleError):
            parse_window(bad)


def test_window_across_midnight() -> None:
    # 2026-12-04 is a Friday.
    night = Schedule.build("night", ["fri 22:00-06:00"], [], "Europe/Berlin")
    assert not night.open_at(at(BERLIN, 2026, 12, 4, 21, 59))
    assert night.open_at(at(BERLIN, 2026, 12, 4, 22, 0))
    assert night.open_at(at(BERLIN, 2026, 12, 5, 5, 59))  # Saturday morning: Friday's window
    assert not night.open_at(at(BERLIN, 2026, 12, 5, 6, 0))
    assert not night.open_at(at(BERLIN, 2026, 12, 3, 23, 0))  # Thursday night
    assert not night.open_at(at(BERLIN, 2026, 12, 5, 23, 0))  # Saturday night


def test_windows_keep_local_hours_across_dst_changes() -> None:
    office = Schedule.build("office", ["mon-sun 07:00-19:00"], [], "Europe/Berlin")
    # Spring forward on 2026-03-29 (CET -> CEST): 07:00 local is 06:00 UTC the day before,
    # 05:00 UTC on the day.
    assert not office.open_at(utc(2026, 3, 28, 5, 30))
    assert office.open_at(utc(2026, 3, 28, 6, 0))
    assert office.open_at(utc(2026, 3, 29, 5, 0))
    assert not office.open_at(utc(2026, 3, 29, 4, 59))
    assert office.open_at(utc(2026, 3, 29, 16, 59)) and not office.open_at(utc(2026, 3, 29, 17, 0))
    # Fall back on 2026-10-25 (CEST -> CET): 19:00 local is 18:00 UTC on the day.
    assert office.open_at(utc(2026, 10, 25, 17, 59)) and not office.open_at(utc(2026, 10, 25, 18, 0))
    # The repeated hour 02:00-03:00 local exists twice; a window across it admits both.
    night = Schedule.build("n", ["sun 01:00-04:00"], [], "Europe/Berlin")
    assert night.open_at(utc(2026, 10, 25, 0, 30)) and night.open_at(utc(2026, 10, 25, 1, 30))
    assert not night.open_at(utc(2026, 10, 25, 3, 0))  # 04:00 CET


def test_holidays_close_every_window_including_the_overnight_spill() -> None:
    sched = Schedule.build(
        "office", ["mon-sun 07:00-19:00", "thu 22:00-02:00"], ["2026-12-25"], "Europe/Berlin"
    )
    assert sched.open_at(at(BERLIN, 2026, 12, 24, 12, 0))
    assert sched.open_at(at(BERLIN, 2026, 12, 24, 23, 0))  # Thursday night window
    assert not sched.open_at(at(BERLIN, 2026, 12, 25, 1, 0))  # its spill into the holiday
    assert not sched.open_at(at(BERLIN, 2026, 12, 25, 12, 0))
    assert sched.open_at(at(BERLIN, 2026, 12, 26, 12, 0))
    with pytest.raises(ScheduleError):
        Schedule.build("x", [], ["25.12.2026"], "UTC")
