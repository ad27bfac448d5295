"""Config section of authorisation (owned by handlers/access): schedules, holidays, validity."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ._fields import FieldError, setting


@dataclass(frozen=True)
class ScheduleSection:
    """One named weekly schedule."""

    windows: tuple[str, ...] = setting(
        (),
        doc="Weekly windows '<days> HH:MM-HH:MM' in access.timezone, e.g. 'mon-fri 07:00-19:00'; "
        "an end not after the start runs across midnight ('fri 22:00-06:00').",
    )
    holidays: tuple[str, ...] = setting(
        (), doc="Local dates (YYYY-MM-DD) on which no window of this schedule opens."
    )


@dataclass(frozen=True)
class AccessSection:
    """Authorisation after identification: who may pass when. Off: every identified face passes."""

    enabled: bool = setting(
        False,
        doc="Check validity dates and schedules before a GRANTED decision is published; a "
        "failed check turns it into DENIED (reason not_valid_yet, expired or outside_schedule).",
    )
    timezone: str = setting("UTC", doc="IANA time zone of the schedules and validity dates.")
    schedules: dict[str, ScheduleSection] = setting(
        factory=dict, doc="Named weekly schedules: [access.schedules.<name>]."
    )
    groups: dict[str, str] = setting(
        factory=dict,
        doc="Access group -> schedule name. A subject's group is its 'access_group' attribute.",
    )
    default_group: str | None = setting(
        None,
        doc="Group of subjects without an 'access_group' attribute; unset: such subjects are "
        "not limited by a schedule.",
    )

    direction: Literal["none", "entry", "exit"] = setting(
        "none", doc="Direction of this device's camera, for anti-passback."
    )
    anti_passback: Literal["off", "hard", "soft"] = setting(
        "off",
        doc="Passages must alternate entry/exit: 'hard' denies a repeated direction (DENIED "
        "anti_passback), 'soft' grants it and raises event/security anti_passback.",
    )
    anti_passback_timeout_s: float = setting(
        3600.0, doc="After this long without a passage a subject starts fresh.", gt=0
    )
    peers: dict[str, str] = setting(
        factory=dict,
        doc="The site's other readers: device id -> 'entry' or 'exit'; their GRANTED "
        "event/access messages (over MQTT) count as passages.",
    )

    def check(self) -> None:
        from ..schedule import Schedule, ScheduleError  # noqa: PLC0415  # parsed only when validated

        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise FieldError("timezone", f"unknown time zone {self.timezone!r}") from None
        for name, sched in self.schedules.items():
            try:
                Schedule.build(name, sched.windows, sched.holidays, self.timezone)
            except ScheduleError as exc:
                raise FieldError(f"schedules.{name}", str(exc)) from None
        for group, sched_name in self.groups.items():
            if sched_name not in self.schedules:
                raise FieldError(f"groups.{group}", f"no schedule named {sched_name!r}")
        if self.anti_passback != "off" and self.direction == "none":
            raise FieldError("direction", "anti_passback needs this camera's direction (entry/exit)")
        for peer, way in self.peers.items():
            if way not in ("entry", "exit"):
                raise FieldError(f"peers.{peer}", f"direction must be 'entry' or 'exit', got {way!r}")
        if self.default_group is not None and self.default_group not in self.groups:
            raise FieldError("default_group", f"no group named {self.default_group!r}")
