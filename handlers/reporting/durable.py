"""Durable events: bus -> storage outbox -> broker, at least once and in order.

:class:`DurableEvents` (Service ``mqtt.events``) owns two named tasks:

* ``mqtt.events.sink`` takes AccessDecision, DoorEvent and SecurityEvent
  from the bus, encodes them (:mod:`.codec`) and appends them to the outbox
  in one durable transaction per batch, BEFORE anything is sent. PrivacyEvents
  are NOT taken from the bus: the policy writes each receipt to the outbox in
  the transaction that made the change (``policy/receipts.py``, topic suffix
  ``event/privacy``), so they are delivered from there, exactly once per row;
* ``mqtt.events.drain`` publishes undelivered rows in commit order at QoS 1
  with a window of ``inflight`` messages on the wire, and marks rows
  delivered only after their PUBACK. When a publish fails (connection lost,
  no acknowledgement) it waits for the next connection and starts again from
  the oldest undelivered row: delivery is at-least-once, consumers
  de-duplicate by ``event_id``. Rows are written to the socket in commit
  order, so order holds per topic (a resend may repeat, never reorder, what a
  consumer first saw). Rows written by other writers (policy receipts, the
  CLI in another process) carry a topic suffix and may lack ``event_id`` and
  ``device_id``: the drain completes them deterministically from the row
  (``event_id`` = the outbox row's id), so a resend is byte-identical. The
  drain also wakes every ``poll_s`` to pick up rows committed by other processes.

A restart resends whatever was committed and not acknowledged, so a device
killed mid-publish loses nothing it had committed.

PUBACK is not durability. A broker may acknowledge a message and die before
it saved it or wrote it to a subscriber (Mosquitto 2.0 acknowledges first and
autosaves after the loop iteration). So "delivered" is tentative for
``redeliver_window_s`` seconds: after every reconnect (a new connection after
a lost one) the drain first republishes, in commit order and before any newer
row, every row whose PUBACK came at most that long before the old connection
was lost (:meth:`Outbox.delivered_since`). A row stays in that set until a
connection acknowledges it again, however many connections fail in between;
that acknowledged republish does NOT restart its window (issue 10.2): a row is
republished after a reconnect at most once per acknowledged delivery, so a
flapping broker cannot make the redelivery set grow at every reconnect. The
window must exceed the broker's save delay; 0 disables it. A
``mqtt.events.reconnects`` task wakes the drain on every reconnect (the
link's ``ComponentStateChanged``), so the republish does not wait for new events.

A publish the broker REFUSES (MQTT 5 PUBACK reason >= 0x80, e.g. 0x87 not
authorized by its ACL: :class:`~.errors.MqttPublishRefused`) is not a
delivery: the row stays pending, the link raises its refused-publish alarm
(:mod:`.refusals`), and the drain retries from the oldest pending row with a
capped, jittered backoff (0.5 s .. 30 s) on the same connection until the
broker accepts it.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import structlog

from ...runtime.backoff import Backoff
from ...runtime.bus import EventBus
from ...runtime.clock import Clock
from ...runtime.events import AccessDecision, ComponentStateChanged, DoorEvent, Event, SecurityEvent
from ...runtime.mqtt.errors import MqttPublishError, MqttPublishRefused
from ...storage.errors import StorageError
from ...storage.outbox import Outbox, OutboxRecord
from .codec import EventCodec
from .wire import NameSource, RowWire

_log = structlog.get_logger("facegate.mqtt")

SINK_TYPES: tuple[type[Event], ...] = (AccessDecision, DoorEvent, SecurityEvent)
"""Bus events the sink makes durable (PrivacyEvents are already in the outbox)."""


class LinkLike(Protocol):
    """What the drain needs from :class:`~facegate.runtime.mqtt.MqttLink`."""

    @property
    def name(self) -> str: ...

    @property
    def connection_number(self) -> int: ...

    def lost_at(self, number: int) -> float | None: ...

    async def wait_connected(self) -> None: ...

    async def publish_to(self, topic: str, payload: bytes, *, qos: int = 1) -> None: ...


@dataclass
class DurableStats:
    """Counters for telemetry (no personal data)."""

    appended: int = 0
    published: int = 0
    append_failures: int = 0
    publish_failures: int = 0
    redelivered: int = 0
    """Rows republished (and acknowledged again) inside the redelivery window."""
    last_access_decision: str = ""
    gallery_size: int = 0


class DurableEvents:
    """Service ``mqtt.events``: the outbox-backed event pipeline (see module docstring)."""

    def __init__(
        self,
        *,
        bus: EventBus,
        outbox: Outbox,
        link: LinkLike,
        codec: EventCodec,
        base_topic: str,
        clock: Clock,
        inflight: int = 200,
        batch: int = 1000,
        queue: int = 4096,
        name: str = "mqtt.events",
        on_access: Callable[[AccessDecision], None] | None = None,
        poll_s: float = 2.0,
        redeliver_window_s: float = 5.0,
        names: NameSource | None = None,
    ) -> None:
        if inflight < 1 or batch < 1:
            raise ValueError("inflight and batch must be >= 1")
        if redeliver_window_s < 0:
            raise ValueError("redeliver_window_s must be >= 0")
        self._bus = bus
        self._outbox = outbox
        self._link = link
        self._codec = codec
        self._base = base_topic
        self._clock = clock
        self._inflight = inflight
        self._batch = batch
        self._queue = queue
        self._name = name
        self._on_access = on_access
        self._poll_s = poll_s
        self._window = redeliver_window_s
        self._wire = RowWire(base_topic=base_topic, device_id=codec.device_id, names=names)
        self._serviced = 0  # the connection the drain last published on (0: none yet)
        self._last_ack = 0.0  # wall time of the last PUBACK bookkeeping
        self._redeliver: dict[int, OutboxRecord] = {}  # seq -> row to republish first
        # Rows whose republish was acknowledged -> that time: never due again for the
        # same original delivery (at most one republish per acknowledged delivery).
        self._redone: dict[int, float] = {}
        self._refusing = False  # the last failed send had a refusal (not a lost connection)
        self._refusal_backoff = Backoff(base=0.5, cap=30.0, rng=random.Random())
        self._wake = asyncio.Event()
        self._wake.set()  # drain whatever a previous run left behind
        self._subscribed = asyncio.Event()
        self.stats = DurableStats()

    @property
    def name(self) -> str:
        return self._name

    @property
    def backlog(self) -> int:
        """Undelivered outbox rows."""
        return self._outbox.backlog

    async def wait_subscribed(self) -> None:
        """Return once the sink listens on the bus (tests publish after this)."""
        await self._subscribed.wait()

    def health(self) -> dict[str, int | str]:
        """Telemetry source: backlog and counters."""
        return {
            "outbox_backlog": self._outbox.backlog,
            "events_appended": self.stats.appended,
            "events_published": self.stats.published,
            "append_failures": self.stats.append_failures,
            "publish_failures": self.stats.publish_failures,
            "events_redelivered": self.stats.redelivered,
        }

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._sink(), name=f"{self._name}.sink")
            tg.create_task(self._drain(), name=f"{self._name}.drain")
            tg.create_task(self._poll(), name=f"{self._name}.poll")
            if self._window > 0:
                tg.create_task(self._reconnects(), name=f"{self._name}.reconnects")

    async def _poll(self) -> None:
        # Rows committed by another process (a CLI erasure receipt) wake no one here.
        while True:
            await self._clock.sleep(self._poll_s)
            self._wake.set()

    async def _reconnects(self) -> None:
        # Wake the drain when the link comes back, so the window is republished now.
        async with self._bus.subscribe(
            ComponentStateChanged, name=f"{self._name}.reconnects", maxsize=16
        ) as sub:
            async for ev in sub:
                if ev.component == self._link.name and ev.state == "connected":
                    self._wake.set()

    # -- bus -> outbox ------------------------------------------------------------------

    async def _sink(self) -> None:
        async with self._bus.subscribe(*SINK_TYPES, name=self._name, maxsize=self._queue) as sub:
            self._subscribed.set()
            try:
                while True:
                    batch: list[Event] = [await sub.get()]
                    while len(batch) < self._batch and (more := sub.get_nowait()) is not None:
                        batch.append(more)
                    await self._append(batch)
            finally:
                self._subscribed.clear()

    async def _append(self, events: list[Event]) -> None:
        encoded = []
        for ev in events:
            if isinstance(ev, AccessDecision):
                self.stats.last_access_decision = ev.decision.value
                self.stats.gallery_size = ev.gallery_size
                if self._on_access is not None:
                    self._on_access(ev)
            encoded.append(self._codec.encode(ev))
        try:
            # One durable commit per batch: written before it can be published.
            async with self._outbox.db.transaction(durable=True) as tx:
                for e in encoded:
                    await self._outbox.append_in(tx, f"{self._base}/{e.suffix}", e.payload, klass=e.klass)
        except StorageError as exc:
            # Never silent: these events are not durable, say so loudly with counts only.
            self.stats.append_failures += len(encoded)
            _log.error(
                "mqtt.events.append_failed",
                events=len(encoded),
                error_type=type(exc).__name__,
                detail=str(exc),
            )
            return
        self.stats.appended += len(encoded)
        self._wake.set()

    # -- outbox -> broker ---------------------------------------------------------------

    async def _drain(self) -> None:
        after = 0
        while True:
            await self._wake.wait()
            await self._link.wait_connected()
            connection = self._link.connection_number
            self._wake.clear()
            if connection != self._serviced:
                if self._serviced and self._window > 0:
                    await self._collect_redelivery(self._serviced)
                self._serviced = connection
            if self._redeliver:
                after = 0
                self._wake.set()  # new rows follow once the window is out
                if not await self._redeliver_pass():
                    await self._next_connection(connection)
                continue
            rows = await self._outbox.pending(self._batch, after_seq=after)
            if not rows:
                continue
            self._wake.set()  # there may be more behind this batch
            acked, failed = await self._send(rows)
            if acked:
                await self._outbox.mark_delivered([r.event_id for r in acked])
                self._last_ack = self._clock.wall()
                self.stats.published += len(acked)
            if failed:
                self.stats.publish_failures += 1
                _log.info("mqtt.events.resend_pending", unacknowledged=failed, backlog=self.backlog)
                after = 0  # start over from the oldest undelivered row
                await self._next_connection(connection)
            else:
                after = rows[-1].seq

    async def _collect_redelivery(self, lost_connection: int) -> None:
        """Add every row acknowledged within the window before ``lost_connection`` ended."""
        lost = self._link.lost_at(lost_connection)
        if lost is None:  # not recorded (long gone): nothing was acknowledged after the last ack
            lost = self._last_ack or self._clock.wall()
        cutoff = lost - self._window
        rows = await self._outbox.delivered_since(cutoff)
        for row in rows:
            if row.seq not in self._redone:
                self._redeliver.setdefault(row.seq, row)
        for seq, redone_at in list(self._redone.items()):
            if redone_at < cutoff:  # its original delivery is older still: never returned again
                del self._redone[seq]
        if self._redeliver:
            _log.info(
                "mqtt.events.redeliver",
                rows=len(self._redeliver),
                window_s=self._window,
                backlog=self.backlog,
            )

    async def _redeliver_pass(self) -> bool:
        """Republish the window (merged with any older unacknowledged row) in commit order.

        Returns False when a publish failed (the rest stays due for the next connection).
        """
        due = sorted(self._redeliver.values(), key=lambda r: r.seq)
        top = due[-1].seq
        # An unacknowledged row older than a republished one must keep its place.
        older = [r for r in await self._outbox.pending(self._batch) if r.seq < top]
        rows = sorted(due + older, key=lambda r: r.seq)
        acked, failed = await self._send(rows)
        now = self._clock.wall()
        fresh: list[str] = []
        for row in acked:
            if self._redeliver.pop(row.seq, None) is not None:
                self._redone[row.seq] = now  # republished once for this delivery: done
                self.stats.redelivered += 1
            else:
                fresh.append(row.event_id)
        if fresh:
            await self._outbox.mark_delivered(fresh)
            self.stats.published += len(fresh)
        if acked:
            self._last_ack = now
        if failed:
            self.stats.publish_failures += 1
            _log.info("mqtt.events.resend_pending", unacknowledged=failed, backlog=self.backlog)
        return not failed

    async def _send(self, rows: list[OutboxRecord]) -> tuple[list[OutboxRecord], int]:
        """Publish ``rows`` in order, ``inflight`` at a time; returns (acknowledged, failed count)."""
        acked: list[OutboxRecord] = []
        failed = 0
        for start in range(0, len(rows), self._inflight):
            window = rows[start : start + self._inflight]
            await self._wire.prefetch(window)  # names are added at publish time, never stored
            # Tasks start in creation order, so the packets hit the socket in commit order.
            results = await asyncio.gather(
                *(self._link.publish_to(*self.wire(r), qos=1) for r in window),
                return_exceptions=True,
            )
            for row, result in zip(window, results, strict=True):
                if result is None:
                    acked.append(row)
                elif isinstance(result, MqttPublishRefused):
                    failed += 1
                    self._refusing = True
                elif isinstance(result, MqttPublishError):
                    failed += 1
                elif isinstance(result, BaseException):
                    raise result
            if failed:
                break
        return acked, failed

    def wire(self, row: OutboxRecord) -> tuple[str, bytes]:
        """The topic and payload a row is published with (:meth:`.wire.RowWire.wire`)."""
        return self._wire.wire(row)

    async def _next_connection(self, seen: int) -> None:
        """Wait for a connection newer than ``seen``; if the old one stays up, retry soon.

        After a refusal the connection is fine and the broker said no: back off
        (capped, jittered) before trying the same rows again.
        """
        if self._refusing:
            self._refusing = False
            await self._clock.sleep(self._refusal_backoff.next_delay())
            await self._link.wait_connected()
            self._wake.set()
            return
        self._refusal_backoff.reset()
        # The link notices a dead connection a moment after a publish fails, so a
        # still-CONNECTED state here is usually stale: poll briefly before resending.
        for _ in range(20):
            if self._link.connection_number != seen:
                break
            await self._clock.sleep(0.025)
        await self._link.wait_connected()
        self._wake.set()

