"""Anti-passback: a subject's passages must alternate entry and exit.

Each reader has a direction (``access.direction`` for this device's camera,
``access.peers`` for the other readers of the site, whose GRANTED
``event/access`` messages this device follows over MQTT). A second passage in
the same direction within ``anti_passback_timeout_s`` of the last one is a
violation: ``hard`` mode denies it (``DENIED anti_passback``), ``soft`` mode
grants it and raises ``event/security anti_passback``. After the timeout the
subject starts fresh. The state is in memory; with a journal
(:mod:`.journal`, when the device has a store) each passage is also persisted
and restored at start-up with its age, so a restart forgets nothing.
"""

from __future__ import annotations

import asyncio
import json
import threading
from dataclasses import dataclass
from typing import Literal, Protocol

import structlog

from ...runtime.bus import EventBus
from ...runtime.clock import Clock
from ...runtime.events import SecurityEvent, SecurityKind
from ...runtime.mqtt.inbound import InboundMessage, MessageHandler

_log = structlog.get_logger("facegate.access")

Direction = Literal["entry", "exit"]


@dataclass(frozen=True, slots=True)
class Passage:
    """The last passage of one subject."""

    direction: str
    monotonic: float


class Journal(Protocol):
    """Where passages are persisted (:class:`.journal.PassageJournal`)."""

    def put(self, subject_id: str, direction: str, at: float) -> None: ...


class AntiPassback:
    """Last passage per subject (guarded by a lock: peers and recognition both record)."""

    def __init__(
        self,
        mode: Literal["hard", "soft"],
        timeout_s: float,
        clock: Clock,
        *,
        journal: Journal | None = None,
    ) -> None:
        self.mode = mode
        self._timeout_s = timeout_s
        self._clock = clock
        self._last: dict[str, Passage] = {}
        self._lock = threading.Lock()
        self.journal = journal

    @property
    def timeout_s(self) -> float:
        return self._timeout_s

    def restore(self, subject_id: str, direction: str, at: float) -> None:
        """Re-create a persisted passage made at wall time ``at`` (its age is kept)."""
        age = max(0.0, self._clock.wall() - at)
        if age >= self._timeout_s:
            return
        with self._lock:
            self._last[subject_id] = Passage(direction, self._clock.monotonic() - age)

    def repeats(self, subject_id: str, direction: str) -> bool:
        """True if passing ``direction`` now repeats the subject's last, unexpired direction."""
        now = self._clock.monotonic()
        with self._lock:
            last = self._last.get(subject_id)
            if last is None or now - last.monotonic >= self._timeout_s:
                return False
            return last.direction == direction

    def record(self, subject_id: str, direction: str) -> None:
        """Remember a passage now (and drop expired ones)."""
        now = self._clock.monotonic()
        if self.journal is not None:
            self.journal.put(subject_id, direction, self._clock.wall())
        with self._lock:
            self._last[subject_id] = Passage(direction, now)
            if len(self._last) > 1024:
                self._last = {k: v for k, v in self._last.items() if now - v.monotonic < self._timeout_s}

    def violation(self, bus: EventBus, subject_id: str, direction: str) -> None:
        """Report a soft-mode violation as a SecurityEvent (pseudonymous id only)."""
        _log.warning("access.anti_passback", mode=self.mode, direction=direction)
        bus.publish(
            SecurityEvent(
                at=self._clock.wall(),
                kind=SecurityKind.ANTI_PASSBACK,
                detail=f"second {direction} without an {'exit' if direction == 'entry' else 'entry'}",
                source="access",
                subject_id=subject_id,
            )
        )


class PeerLink(Protocol):
    """What the follower needs from the MQTT link (:class:`~facegate.runtime.mqtt.MqttLink`)."""

    async def subscribe(self, topic_filter: str, handler: MessageHandler, *, qos: int = ...) -> None: ...


class PeerPassages:
    """Service ``access.peers``: follows the GRANTED decisions of the site's other readers.

    ``link`` is the device's MQTT link (the composition root passes it); without
    one, or without peers, the service idles and only this device's own passages count.
    """

    def __init__(
        self,
        passback: AntiPassback,
        peers: dict[str, str],
        link: PeerLink | None,
        *,
        prefix: str = "facegate/v1",
    ) -> None:
        self._passback = passback
        self._peers = dict(peers)
        self._link = link
        self._prefix = prefix
        self.recorded = 0

    @property
    def name(self) -> str:
        return "access.peers"

    async def run(self) -> None:
        link = self._link
        if link is None or not self._peers:
            _log.info("access.peers_off", reason="no MQTT link or no peers")
            await asyncio.Event().wait()
            return
        for peer, direction in self._peers.items():
            await link.subscribe(f"{self._prefix}/{peer}/event/access", self._handler(direction))
        await asyncio.Event().wait()

    def _handler(self, direction: str) -> MessageHandler:
        async def handle(message: InboundMessage) -> None:
            try:
                body = json.loads(message.payload)
            except (ValueError, TypeError):
                return
            if not isinstance(body, dict):
                return
            subject = body.get("subject_id")
            at_door = body.get("at_door", True) is not False  # a bystander did not pass (issue 16)
            if body.get("decision") == "granted" and isinstance(subject, str) and subject and at_door:
                self._passback.record(subject, direction)
                self.recorded += 1

        return handle
