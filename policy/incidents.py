"""Security incidents: severity, containment, persistence and the enclosure tamper input.

Every :class:`SecurityEvent` on the bus is an incident. Its *incident kind* is
the event kind, except a ``tamper`` raised by the GPIO tamper switch, which is
``enclosure_open``. :data:`DEFAULT_RULES` gives each kind a severity and a
response; ``privacy.incidents.<kind>`` overrides them:

* ``notify``: recorded and published only;
* ``lockdown``: the door controller enters lockdown (cause ``incident:<id>``)
  and stays there until a signed ``release``;
* ``shred_kek`` (``enclosure_open`` only, meant for kiosks): the key vault is
  destroyed at once (:func:`facegate.policy.teardown.destroy`): every DEK and
  the KEK check value go, so the whole gallery is crypto-shredded, and the
  device refuses to start until it is re-initialised.

Each incident gets a stable id (UUIDv7), a row in ``incidents`` (storage),
an ``incident`` audit row and an ``event/incident`` message (outbox, class
security) with the per-kind count. The operator runbook is docs/incidents.md.

:func:`report_incident` is the hook other subsystems (licence clock rollback,
licence tamper) call: it only publishes the SecurityEvent; this service does
the rest.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog

from ..runtime.bus import EventBus
from ..runtime.clock import Clock, utc_iso
from ..runtime.config.privacy import IncidentRule
from ..runtime.events import SecurityEvent, SecurityKind
from ..storage import EventClass, rights_state, uuid7_str
from ..storage.rights_state import IncidentRow

if TYPE_CHECKING:
    from .core import Policy

_log = structlog.get_logger("facegate.policy.incidents")
TOPIC = "event/incident"
TAMPER_SOURCE = "gpio:tamper"
ENCLOSURE_OPEN = "enclosure_open"

DEFAULT_RULES: dict[str, IncidentRule] = {
    "tamper": IncidentRule(severity="critical", response="notify"),
    ENCLOSURE_OPEN: IncidentRule(severity="critical", response="lockdown"),
    "decrypt_failure": IncidentRule(severity="critical", response="notify"),
    "integrity_failure": IncidentRule(severity="critical", response="notify"),
    "licence_tamper": IncidentRule(severity="critical", response="notify"),
    "clock_rollback": IncidentRule(severity="warning", response="notify"),
    "command_rejected": IncidentRule(severity="info", response="notify"),
    "door_forced": IncidentRule(severity="critical", response="notify"),
    "model_rejected": IncidentRule(severity="critical", response="notify"),
    "bus_overflow": IncidentRule(severity="warning", response="notify"),
    "fire_release": IncidentRule(severity="critical", response="notify"),
    "anti_passback": IncidentRule(severity="info", response="notify"),
    "publish_refused": IncidentRule(severity="warning", response="notify"),
}


def report_incident(bus: EventBus, clock: Clock, kind: SecurityKind, detail: str, *, source: str) -> None:
    """The hook for other subsystems: raise a security incident (no personal data in ``detail``)."""
    bus.publish(SecurityEvent(at=clock.wall(), kind=kind, detail=detail, source=source))


def incident_kind(event: SecurityEvent) -> str:
    if event.kind is SecurityKind.TAMPER and event.source == TAMPER_SOURCE:
        return ENCLOSURE_OPEN
    return event.kind.value


@dataclass(frozen=True)
class Incident:
    """One handled incident (ids and codes only)."""

    incident_id: str
    at: float
    kind: str
    severity: str
    response: str
    outcome: str
    count: int
    handled_s: float
    """Clock seconds from the event's publication to the response done."""


class IncidentResponder:
    """Supervised service: every SecurityEvent -> rule -> response -> persisted, published."""

    def __init__(
        self,
        policy: Policy,
        bus: EventBus,
        clock: Clock,
        *,
        rules: dict[str, IncidentRule],
        door: Any | None = None,
        shred: Callable[[str], Awaitable[None]] | None = None,
    ) -> None:
        self._policy = policy
        self._bus = bus
        self._clock = clock
        self.rules = DEFAULT_RULES | rules
        self._door = door
        self._shred = shred
        self.handled: list[Incident] = []

    @property
    def name(self) -> str:
        return "policy.incidents"

    async def run(self) -> None:
        async with self._bus.subscribe(SecurityEvent, name=self.name, maxsize=1024) as sub:
            async for event in sub:
                await self.handle(event)

    async def handle(self, event: SecurityEvent) -> Incident:
        t0 = self._clock.monotonic()
        kind = incident_kind(event)
        rule = self.rules.get(kind, IncidentRule())
        incident_id = uuid7_str()
        outcome = await self._respond(rule.response, incident_id)
        handled_s = self._clock.monotonic() - t0
        policy = self._policy
        store = policy.store
        async with store.transaction() as tx:
            row = IncidentRow(incident_id, tx.at, kind, rule.severity, rule.response, event.source, outcome)
            await rights_state.add_incident(tx, row)
            count = (await rights_state.incident_counts(tx)).get(kind, 0)
            await store.audit(
                tx,
                actor="policy.incidents",
                action="incident",
                detail={
                    "incident_id": incident_id,
                    "kind": kind,
                    "severity": rule.severity,
                    "outcome": outcome,
                },
            )
            body = {
                "incident_id": incident_id,
                "at": utc_iso(event.at),
                "kind": kind,
                "severity": rule.severity,
                "response": rule.response,
                "outcome": outcome,
                "source": event.source,
                "count": count,
            }
            payload = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
            await store.outbox.append_in(tx, TOPIC, payload, klass=EventClass.SECURITY)
        incident = Incident(
            incident_id, row.at, kind, rule.severity, rule.response, outcome, count, handled_s
        )
        self.handled.append(incident)
        _log.warning(
            "policy.incident", incident_id=incident_id, kind=kind, severity=rule.severity, outcome=outcome
        )
        return incident

    async def _respond(self, response: str, incident_id: str) -> str:
        if response == "lockdown":
            if self._door is None:
                return "no_door"
            self._door.lockdown(f"incident:{incident_id}")
            return "locked_down"
        if response == "shred_kek":
            if self._shred is None:
                return "no_store"
            await self._shred(incident_id)
            return "kek_shredded"
        return "notified"


class TamperInput:
    """Supervised service: the tamper switch opening raises ``enclosure_open`` (also if open at start)."""

    def __init__(self, bus: EventBus, clock: Clock, gpio: Any, *, line: int, open_high: bool) -> None:
        self._bus = bus
        self._clock = clock
        self._gpio = gpio
        self._line = line
        self._open_high = open_high

    @property
    def name(self) -> str:
        return "policy.tamper_input"

    async def run(self) -> None:
        from ..drivers.gpio import GpioInputChanged  # noqa: PLC0415  # drivers load lazily

        async with self._bus.subscribe(GpioInputChanged, name=self.name, maxsize=64) as sub:
            if self._gpio.read_input(self._line) == self._open_high:
                self._raise("enclosure open at start-up")
            async for edge in sub:
                if edge.line == self._line and edge.high == self._open_high:
                    self._raise("enclosure opened")

    def _raise(self, detail: str) -> None:
        report_incident(self._bus, self._clock, SecurityKind.TAMPER, detail, source=TAMPER_SOURCE)
