"""Durable outbox: events written with the change that caused them, delivered later.

Contract (used by the MQTT link)
--------------------------------
* :meth:`Outbox.append` (or :func:`append` inside a caller's transaction)
  stores ``(event_id, topic, class, payload, created_at)``. ``event_id`` is a
  UUIDv7, so ids sort by creation time; ``seq`` is the commit order.
* :meth:`Outbox.pending` returns undelivered rows in ``seq`` order, hence in
  order per topic. Call :meth:`Outbox.mark_delivered` only after the broker
  acknowledged (PUBACK); anything unmarked is resent after a reconnect or a
  restart (at-least-once; consumers de-duplicate by event id).
* Bound: at most ``max_pending`` undelivered rows. When full, the oldest
  pending *telemetry* row is dropped to make room (counted in
  ``dropped_telemetry`` and in ``kv_state``). If no telemetry row is left,
  a telemetry append is dropped (counted) and an access/security/privacy/door
  append raises :class:`OutboxFullError`: those are never dropped silently.
* :meth:`Outbox.delivered_since` lists rows delivered since a wall time
  (read-only; the link's redelivery window after a broker loss).
* Delivered rows are purged by :meth:`Outbox.purge_delivered` after their
  retention (policy default 7 days).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

from ..runtime.clock import Clock
from .db import Database, Tx
from .errors import InvalidInputError, OutboxFullError
from .uuid7 import uuid7_str

DROPPED_KEY = "outbox.dropped_telemetry"
_CHUNK = 500


class EventClass(enum.StrEnum):
    """Delivery class of an outbox row; only TELEMETRY may be dropped."""

    ACCESS = "access"
    DOOR = "door"
    SECURITY = "security"
    PRIVACY = "privacy"
    REPLY = "reply"
    TELEMETRY = "telemetry"


DROPPABLE = frozenset({EventClass.TELEMETRY})


@dataclass(frozen=True, slots=True)
class OutboxRecord:
    seq: int
    event_id: str
    topic: str
    klass: EventClass
    payload: bytes
    created_at: float


class Outbox:
    """The outbox of one open database."""

    def __init__(self, db: Database, *, max_pending: int = 100_000, clock: Clock) -> None:
        if max_pending < 1:
            raise ValueError("max_pending must be >= 1")
        self.db = db
        self.max_pending = max_pending
        self.clock = clock
        self.dropped_telemetry = 0
        self._pending = 0

    async def open(self) -> None:
        """Count the backlog (call once after the database opened)."""
        self._pending = await self._count()

    async def _count(self) -> int:
        row = await self.db.fetchone("SELECT COUNT(*) FROM outbox WHERE delivered_at IS NULL")
        return int(row[0]) if row else 0

    @property
    def backlog(self) -> int:
        """Undelivered rows known to this process (exact after open/purge)."""
        return self._pending

    async def append(
        self, topic: str, payload: bytes, *, klass: EventClass, durable: bool | None = None
    ) -> OutboxRecord | None:
        """Append in its own transaction. Telemetry commits with synchronous=NORMAL."""
        if durable is None:
            durable = klass not in DROPPABLE
        async with self.db.transaction(durable=durable) as tx:
            return await self.append_in(tx, topic, payload, klass=klass)

    async def append_in(
        self, tx: Tx, topic: str, payload: bytes, *, klass: EventClass
    ) -> OutboxRecord | None:
        """Append inside the caller's transaction (commits with the causing change).

        Returns None when a telemetry event was dropped because the outbox is full.
        Raises OutboxFullError for a non-droppable event when nothing can be evicted.
        """
        if not topic or "#" in topic or "+" in topic:
            raise InvalidInputError(f"invalid outbox topic {topic!r}")
        if not isinstance(payload, bytes | bytearray):
            raise InvalidInputError("outbox payload must be bytes")
        klass = EventClass(klass)
        if self._pending >= self.max_pending:
            evicted = await tx.execute(
                "DELETE FROM outbox WHERE seq = (SELECT MIN(seq) FROM outbox "
                "WHERE klass = ? AND delivered_at IS NULL)",
                (EventClass.TELEMETRY.value,),
            )
            if evicted == 0 and klass not in DROPPABLE:
                raise OutboxFullError(
                    f"outbox holds {self._pending} undelivered events (bound "
                    f"{self.max_pending}) and none is droppable; {klass.value} event refused"
                )
            await self._count_drop(tx)
            if evicted == 0:
                return None
            tx.on_commit(self._evicted)
        event_id = uuid7_str()
        row = await tx.fetchone(
            "INSERT INTO outbox(event_id, topic, klass, payload, created_at) "
            "VALUES (?, ?, ?, ?, ?) RETURNING seq",
            (event_id, topic, klass.value, bytes(payload), tx.at),
        )
        assert row is not None
        tx.on_commit(self._appended)
        return OutboxRecord(int(row[0]), event_id, topic, klass, bytes(payload), tx.at)

    def _appended(self) -> None:
        self._pending += 1

    def _evicted(self) -> None:
        self._pending -= 1

    async def _count_drop(self, tx: Tx) -> None:
        def bump() -> None:
            self.dropped_telemetry += 1

        tx.on_commit(bump)
        await tx.execute(
            "INSERT INTO kv_state(key, value, updated_at) VALUES (?, '1', ?) "
            "ON CONFLICT(key) DO UPDATE SET value = CAST(value AS INTEGER) + 1, "
            "updated_at = excluded.updated_at",
            (DROPPED_KEY, tx.at),
        )

    async def pending(self, limit: int = 500, *, after_seq: int = 0) -> list[OutboxRecord]:
        """Undelivered rows with ``seq > after_seq``, oldest first."""
        rows = await self.db.fetchall(
            "SELECT seq, event_id, topic, klass, payload, created_at FROM outbox "
            "WHERE delivered_at IS NULL AND seq > ? ORDER BY seq LIMIT ?",
            (after_seq, limit),
        )
        return [
            OutboxRecord(int(s), str(e), str(t), EventClass(k), bytes(p), float(c))
            for s, e, t, k, p, c in rows
        ]

    async def delivered_since(self, since: float, limit: int = 100_000) -> list[OutboxRecord]:
        """Rows marked delivered at or after wall time ``since``, oldest first (by ``seq``).

        Read-only. The MQTT link republishes these after a reconnect: a broker
        may acknowledge a message and die before it saved or forwarded it.
        """
        rows = await self.db.fetchall(
            "SELECT seq, event_id, topic, klass, payload, created_at FROM outbox "
            "WHERE delivered_at IS NOT NULL AND delivered_at >= ? ORDER BY seq LIMIT ?",
            (since, limit),
        )
        return [
            OutboxRecord(int(s), str(e), str(t), EventClass(k), bytes(p), float(c))
            for s, e, t, k, p, c in rows
        ]

    async def mark_delivered(self, event_ids: Sequence[str]) -> int:
        """Mark rows delivered (call only after the broker acknowledged them)."""
        if not event_ids:
            return 0
        done = 0
        async with self.db.transaction(durable=False) as tx:
            for i in range(0, len(event_ids), _CHUNK):
                chunk = list(event_ids[i : i + _CHUNK])
                marks = ",".join("?" * len(chunk))
                done += await tx.execute(
                    f"UPDATE outbox SET delivered_at = ? WHERE delivered_at IS NULL "  # noqa: S608  # only '?' placeholders are interpolated
                    f"AND event_id IN ({marks})",
                    (tx.at, *chunk),
                )

        self._pending = max(0, self._pending - done)
        return done

    async def purge_delivered(self, older_than_s: float) -> int:
        """Delete rows delivered more than ``older_than_s`` seconds ago; re-syncs the backlog."""
        cutoff = self.clock.wall() - older_than_s
        async with self.db.transaction(durable=False) as tx:
            n = await tx.execute(
                "DELETE FROM outbox WHERE delivered_at IS NOT NULL AND delivered_at < ?",
                (cutoff,),
            )
        self._pending = await self._count()
        return n


async def purge_class_before(tx: Tx, klass: EventClass, cutoff: float) -> int:
    """Delete rows of ``klass`` created before ``cutoff`` (delivered or not): retention."""
    return await tx.execute("DELETE FROM outbox WHERE klass = ? AND created_at < ?", (klass.value, cutoff))


async def delete_class(tx: Tx, klass: EventClass) -> int:
    """Teardown: every row of ``klass``."""
    return await tx.execute("DELETE FROM outbox WHERE klass = ?", (klass.value,))


async def payloads_naming(
    db: Database, klass: EventClass, subject_id: str, limit: int
) -> list[tuple[str, float, str]]:
    """``(event_id, created_at, payload text)`` of rows of ``klass`` whose payload names the subject."""
    rows = await db.fetchall(
        "SELECT event_id, created_at, CAST(payload AS TEXT) FROM outbox WHERE klass = ? "
        "AND json_valid(CAST(payload AS TEXT)) "
        "AND json_extract(CAST(payload AS TEXT), '$.subject_id') = ? ORDER BY seq DESC LIMIT ?",
        (klass.value, subject_id, limit),
    )
    return [(str(r[0]), float(r[1]), str(r[2])) for r in rows]
