"""Weekly time windows and holidays, evaluated in the site's time zone.

A window is ``"<days> <HH:MM>-<HH:MM>"``: days as ``mon``..``sun``, ranges
(``mon-fri``) and lists (``sat,sun``); the end may be ``24:00``. A window whose
end is not after its start runs across midnight (``fri 22:00-06:00`` is
Friday 22:00 to Saturday 06:00). Times are local wall-clock times of
``timezone`` (``zoneinfo``), so a window keeps its local hours across a DST
change; a local time skipped by the change does not exist and a repeated
one is inside the window if either occurrence is.

On a holiday (a local date) no window of the schedule opens, including the
part of a window that started the day before and runs past midnight into it.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass
from zoneinfo import ZoneInfo

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_WINDOW = re.compile(r"^\s*([a-z,\-]+)\s+(\d{2}):(\d{2})\s*-\s*(\d{2}):(\d{2})\s*$")


class ScheduleError(ValueError):
    """A window or holiday is malformed (the message says which and why)."""


@dataclass(frozen=True, slots=True)
class Window:
    """Open on ``days`` (0 = Monday) from ``start`` to ``end`` minutes after local midnight."""

    days: frozenset[int]
    start: int
    end: int

    @property
    def overnight(self) -> bool:
        return self.end <= self.start


def _days(spec: str, text: str) -> frozenset[int]:
    out: set[int] = set()
    for part in spec.split(","):
        if "-" in part:
            a, _, b = part.partition("-")
            if a not in DAYS or b not in DAYS:
                raise ScheduleError(f"{text!r}: unknown day in {part!r} (use {', '.join(DAYS)})")
            i, j = DAYS.index(a), DAYS.index(b)
            out.update(range(i, j + 1) if i <= j else [*range(i, 7), *range(0, j + 1)])
        elif part in DAYS:
            out.add(DAYS.index(part))
        else:
            raise ScheduleError(f"{text!r}: unknown day {part!r} (use {', '.join(DAYS)})")
    return frozenset(out)


def parse_window(text: str) -> Window:
    """Parse one ``"<days> HH:MM-HH:MM"`` window. Raises ScheduleError."""
    m = _WINDOW.match(text.lower())
    if m is None:
        raise ScheduleError(f"{text!r}: expected '<days> HH:MM-HH:MM', e.g. 'mon-fri 07:00-19:00'")
    days, h1, m1, h2, m2 = m.groups()
    start, end = int(h1) * 60 + int(m1), int(h2) * 60 + int(m2)
    if int(m1) > 59 or int(m2) > 59 or start >= 24 * 60 or end > 24 * 60:
        raise ScheduleError(f"{text!r}: times must be 00:00-24:00")
    return Window(_days(days, text), start, end)


def parse_holiday(text: str) -> dt.date:
    """An ISO date ``YYYY-MM-DD``. Raises ScheduleError."""
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise ScheduleError(f"{text!r}: holidays are ISO dates, e.g. 2026-12-25") from None


@dataclass(frozen=True)
class Schedule:
    """A named set of weekly windows with holidays, in one time zone."""

    name: str
    windows: tuple[Window, ...]
    holidays: frozenset[dt.date]
    tz: ZoneInfo

    @classmethod
    def build(
        cls, name: str, windows: Iterable[str], holidays: Iterable[str], timezone: str
    ) -> Schedule:
        """Parse everything once (config load); raises ScheduleError."""
        return cls(
            name,
            tuple(parse_window(w) for w in windows),
            frozenset(parse_holiday(h) for h in holidays),
            ZoneInfo(timezone),
        )

    def open_at(self, wall: float) -> bool:
        """Whether the schedule admits POSIX time ``wall``."""
        local = dt.datetime.fromtimestamp(wall, tz=self.tz)
        today = local.date()
        if today in self.holidays:
            return False
        minute = local.hour * 60 + local.minute
        weekday = local.weekday()
        yesterday = (weekday - 1) % 7
        for w in self.windows:
            if w.overnight:
                if weekday in w.days and minute >= w.start:
                    return True
                if yesterday in w.days and minute < w.end:
                    return True
            elif weekday in w.days and w.start <= minute < w.end:
                return True
        return False
