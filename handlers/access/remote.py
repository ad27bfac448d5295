"""Remote open (the signed ``open`` command) through the face's authorisation and audit path.

A remote open is decided like a face, by the same :class:`~.authoriser.Authoriser`:

- in lockdown it is ``DENIED lockdown`` (the door is not asked);
- ``subject`` names a subject: its validity, group schedule, holidays and
  anti-passback apply exactly as for a face (``DENIED expired``,
  ``outside_schedule`` with the schedule, ...);
- ``group`` (without a subject) names an access group: that group's schedule
  and holidays apply (``DENIED unknown_group`` / ``outside_schedule``);
- neither: the operator's own remote open, ``GRANTED remote_open``;
- a subject or group while ``access.enabled`` is false cannot be checked:
  ``DENIED access_disabled`` (fail closed).

Every decision is first appended to the audit hash chain (action
``door_command``, actor = the verified operator, detail = ids and reason codes
only); if the store cannot record it within ``audit_timeout_s`` the open is
``DENIED audit_unavailable``. Then the door is asked (a grant) and the decision
is published as an :class:`AccessDecision` (``event/access``, reason
``remote_open`` when granted), so an external controller and the audit trail
see the same answer as for a face. The door controller does not pulse again on
that event: the command already actuated it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from typing import Any, Protocol

import structlog

from ...runtime.bus import EventBus
from ...runtime.clock import Clock
from ...runtime.errors import FacegateError
from ...runtime.events import AccessDecision, Decision
from .authoriser import Authoriser

_log = structlog.get_logger("facegate.access")

REMOTE_OPEN = "remote_open"
"""Reason of a granted remote open (the door controller does not pulse again on it)."""


class RemoteOpenDenied(FacegateError):
    """The remote open was refused; ``decision`` is the published, audited decision."""

    def __init__(self, decision: AccessDecision) -> None:
        super().__init__(f"remote open denied: {decision.reason}")
        self.decision = decision


class DoorActuator(Protocol):
    """What a remote open needs of the door controller."""

    @property
    def locked_down(self) -> bool: ...

    async def open(self, cause: str) -> None: ...


class RemoteOpen:
    """Component ``access.remote_open`` (see module docstring); constructor-injected."""

    def __init__(
        self,
        door: DoorActuator,
        bus: EventBus,
        clock: Clock,
        *,
        authoriser: Authoriser | None,
        store: Any | None,
        audit_timeout_s: float = 2.0,
    ) -> None:
        self._door = door
        self._bus = bus
        self._clock = clock
        self._authoriser = authoriser
        self._store = store
        self._audit_timeout = audit_timeout_s
        self.counters = {"granted": 0, "denied": 0}

    def health(self) -> dict[str, int]:
        """Telemetry source ``access.remote_open``: granted and denied counts."""
        return dict(self.counters)

    async def open(
        self, *, cause: str, operator: str | None, subject: str | None = None, group: str | None = None
    ) -> AccessDecision:
        """Authorise, audit, actuate and publish; raise RemoteOpenDenied when refused."""
        decision = AccessDecision(
            at=self._clock.wall(),
            event_id=uuid.uuid4().hex,
            decision=Decision.GRANTED,
            reason=REMOTE_OPEN,
            subject_id=subject,
            score=None,
            runner_up=None,
            margin=None,
            threshold=0.0,
        )
        decision = await self._authorise(decision, group)
        if not await self._audit(decision, operator, group):
            decision = _denied(decision, "audit_unavailable")
        if decision.decision is Decision.GRANTED:
            from ..door.errors import DoorError, DoorLockedDownError  # noqa: PLC0415  # optional part

            try:
                await self._door.open(cause)
            except DoorLockedDownError:  # lockdown began meanwhile
                decision = _denied(decision, "lockdown")
                await self._audit(decision, operator, group)
            except DoorError:  # no relay / not running: the chain records that it did not open
                await self._audit(_denied(decision, "door_failed"), operator, group)
                raise
        self._bus.publish(decision)
        granted = decision.decision is Decision.GRANTED
        self.counters["granted" if granted else "denied"] += 1
        _log.info(
            "access.remote_open",
            decision=decision.event_id,
            outcome=decision.decision.value,
            reason=decision.reason,
        )
        if not granted:
            raise RemoteOpenDenied(decision)
        return decision

    async def _authorise(self, decision: AccessDecision, group: str | None) -> AccessDecision:
        if self._door.locked_down:
            return _denied(decision, "lockdown")
        if decision.subject_id is None and group is None:
            return decision
        if self._authoriser is None:
            return _denied(decision, "access_disabled")
        if decision.subject_id is not None:
            return await self._authoriser.authorise(decision)
        verdict = self._authoriser.verdict({"access_group": group}, decision.at)
        if verdict is None:
            return decision
        return _denied(decision, verdict.reason, verdict.schedule)

    async def _audit(self, decision: AccessDecision, operator: str | None, group: str | None) -> bool:
        """Append the decision to the hash chain; False if the store could not (fail closed)."""
        store = self._store
        if store is None:
            return True  # storage disabled: nothing to chain to (documented)
        from ...storage.audit import AuditAction  # noqa: PLC0415  # optional part

        detail: dict[str, str | None] = {
            "verb": "open",
            "decision": decision.decision.value,
            "reason": decision.reason,
            "event_id": decision.event_id,
        }
        if decision.schedule is not None:
            detail["schedule"] = decision.schedule
        if group is not None:
            detail["group"] = group
        try:
            async with asyncio.timeout(self._audit_timeout), store.transaction() as tx:
                await store.audit(
                    tx,
                    actor=operator or "mqtt",
                    action=AuditAction.DOOR_COMMAND,
                    subject_id=decision.subject_id,
                    detail=detail,
                )
        except TimeoutError:
            _log.warning("access.remote_open_audit_failed", error_type="TimeoutError")
            return False
        except Exception as exc:  # noqa: BLE001  # any store failure refuses the open, never crashes
            _log.warning("access.remote_open_audit_failed", error_type=type(exc).__name__)
            return False
        return True


def _denied(decision: AccessDecision, reason: str, schedule: str | None = None) -> AccessDecision:
    return dataclasses.replace(decision, decision=Decision.DENIED, reason=reason, schedule=schedule)
