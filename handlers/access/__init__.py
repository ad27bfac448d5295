"""Authorisation after identification: validity dates, weekly schedules and holidays.

Public surface: :class:`Authoriser`, :class:`Schedule`, :func:`store_lookup`.
"""

from __future__ import annotations

from ...runtime.schedule import Schedule, ScheduleError, parse_window
from .authoriser import Authoriser, Verdict, store_lookup
from .passback import AntiPassback, PeerPassages

__all__ = [
    "AntiPassback",
    "Authoriser",
    "PeerPassages",
    "Schedule",
    "ScheduleError",
    "Verdict",
    "parse_window",
    "store_lookup",
]
