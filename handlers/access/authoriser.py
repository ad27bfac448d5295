"""Authorisation after identification: validity dates and group schedules.

Identification answers *who*; this answers *may they pass now*. The
recognition service calls :meth:`Authoriser.authorise` on every GRANTED
decision before it is published, so the door, the MQTT event and the audit
trail all see the same final answer:

- ``valid_from`` / ``valid_until`` subject attributes (ISO date = the whole
  local day, or an ISO date-time) -> ``DENIED not_valid_yet`` / ``expired``;
- the subject's ``access_group`` attribute (else ``access.default_group``)
  names a schedule; outside it -> ``DENIED outside_schedule`` with the
  schedule's name in the event;
- anti-passback (``access.anti_passback``, see :mod:`.passback`): a repeated
  direction -> ``DENIED anti_passback`` (hard) or a SecurityEvent (soft);
- the subject's rights cannot be read in time (store stalled or failing) ->
  ``DENIED rights_unavailable`` (fail closed).

Only ids and reason codes leave this module; attribute values are never logged.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

import structlog

from ...runtime.bus import EventBus
from ...runtime.config.access import AccessSection
from ...runtime.events import AccessDecision, Decision
from ...runtime.schedule import Schedule
from .passback import AntiPassback

_log = structlog.get_logger("facegate.access")

Attributes = Mapping[str, Any]
RightsLookup = Callable[[str], Awaitable[Attributes | None]]
"""subject id -> its attributes (None: unknown subject)."""


@dataclass(frozen=True, slots=True)
class Verdict:
    """Why a GRANTED identification is refused (reason code, schedule name if any)."""

    reason: str
    schedule: str | None = None


def _bound(value: Any, tz: ZoneInfo, *, end: bool) -> float | None:
    """POSIX time of a validity bound; a date covers its whole local day."""
    if value is None or value == "":
        return None
    text = str(value)
    try:
        if len(text) == 10:
            day = dt.date.fromisoformat(text)
            if end:
                day += dt.timedelta(days=1)
            return dt.datetime.combine(day, dt.time(), tzinfo=tz).timestamp()
        stamp = dt.datetime.fromisoformat(text)
    except ValueError:
        return float("-inf") if end else float("inf")  # unreadable bound: fail closed
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=tz)
    return stamp.timestamp()


class Authoriser:
    """Checks validity and schedules for GRANTED decisions (see module docstring)."""

    def __init__(
        self,
        section: AccessSection,
        lookup: RightsLookup,
        *,
        lookup_timeout_s: float = 2.0,
        passback: AntiPassback | None = None,
        bus: EventBus | None = None,
    ) -> None:
        self._cfg = section
        self._lookup = lookup
        self._passback = passback
        self._bus = bus
        self._timeout = lookup_timeout_s
        self._tz = ZoneInfo(section.timezone)
        self._schedules = {
            name: Schedule.build(name, s.windows, s.holidays, section.timezone)
            for name, s in section.schedules.items()
        }
        self.refused: dict[str, int] = {}

    def verdict(self, attrs: Attributes, wall: float) -> Verdict | None:
        """None if a subject with ``attrs`` may pass at ``wall``, else why not."""
        start = _bound(attrs.get("valid_from"), self._tz, end=False)
        if start is not None and wall < start:
            return Verdict("not_valid_yet")
        stop = _bound(attrs.get("valid_until"), self._tz, end=True)
        if stop is not None and wall >= stop:
            return Verdict("expired")
        group = attrs.get("access_group") or self._cfg.default_group
        if group is None:
            return None
        schedule_name = self._cfg.groups.get(str(group))
        if schedule_name is None:
            return Verdict("unknown_group")
        if not self._schedules[schedule_name].open_at(wall):
            return Verdict("outside_schedule", schedule_name)
        return None

    async def authorise(self, decision: AccessDecision) -> AccessDecision:
        """The decision to publish: unchanged, or GRANTED turned into DENIED with the reason."""
        if decision.decision is not Decision.GRANTED or decision.subject_id is None:
            return decision
        try:
            async with asyncio.timeout(self._timeout):
                attrs = await self._lookup(decision.subject_id)
        except TimeoutError:
            return self._deny(decision, Verdict("rights_unavailable"))
        except Exception as exc:  # noqa: BLE001  # any store failure must refuse, not crash recognition
            _log.warning("access.rights_failed", error_type=type(exc).__name__)
            return self._deny(decision, Verdict("rights_unavailable"))
        verdict = self.verdict(attrs or {}, decision.at)
        if verdict is None and decision.at_door:  # a bystander (issue 16) is not passing
            verdict = self._anti_passback(decision.subject_id)
        return decision if verdict is None else self._deny(decision, verdict)

    def _anti_passback(self, subject_id: str) -> Verdict | None:
        """Check and record this passage (None: it may pass)."""
        direction = self._cfg.direction
        if self._passback is None or direction == "none":
            return None
        if self._passback.repeats(subject_id, direction):
            if self._passback.mode == "hard":
                return Verdict("anti_passback")
            if self._bus is not None:
                self._passback.violation(self._bus, subject_id, direction)
        self._passback.record(subject_id, direction)
        return None

    def _deny(self, decision: AccessDecision, verdict: Verdict) -> AccessDecision:
        self.refused[verdict.reason] = self.refused.get(verdict.reason, 0) + 1
        _log.info(
            "access.denied",
            decision=decision.event_id,
            reason=verdict.reason,
            schedule=verdict.schedule,
        )
        return dataclasses.replace(
            decision, decision=Decision.DENIED, reason=verdict.reason, schedule=verdict.schedule
        )


def store_lookup(store: Any) -> RightsLookup:
    """Read a subject's attributes from the encrypted store (``store.gallery.get``)."""

    async def lookup(subject_id: str) -> Attributes | None:
        from ...storage.errors import SubjectNotFoundError  # noqa: PLC0415  # optional part

        try:
            record = await store.gallery.get(subject_id)
        except SubjectNotFoundError:
            return None
        attributes: Attributes = record.attributes
        return attributes

    return lookup
