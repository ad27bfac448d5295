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
* Provisioning (consent grants and activations of an enrolment: bulk
  imports queue two per subject) has its own class and its own bound
  ``max_provisioning`` and never counts against ``max_pending``: offline
  provisioning can neither fill the outbox nor make it refuse an access,
  privacy, door or security event. When the provisioning bound is reached,
  the oldest pending provisioning rows of the same topic are *coalesced*
  into one summary row (``{"kind": "receipts_coalesced", "events": n, ...}``,
  ids and counts only, at the seq of the newest folded row, so order is
  kept); each folded change stays in the audit chain. Provisioning appends
  therefore never fail for space.
* :meth:`Outbox.delivered_since` lists rows delivered since a wall time
  (read-only; the link's redelivery window after a broker loss).
* Delivered rows are purged by :meth:`Outbox.purge_delivered` after their
  retention (policy default 7 days).
"""

from __future__ import annotations

import enum
import json
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
    PROVISIONING = "provisioning"


DROPPABLE = frozenset({EventClass.TELEMETRY})
COALESCED_KIND = "receipts_coalesced"


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

    def __init__(
        self,
        db: Database,
        *,
        max_pending: int = 100_000,
        clock: Clock,
        max_provisioning: int | None = None,
    ) -> None:
        if max_pending < 1:
            raise ValueError("max_pending must be >= 1")
        if max_provisioning is not None and max_provisioning < 2:
            raise ValueError("max_provisioning must be >= 2")
        self.db = db
        self.max_pending = max_pending
        self.max_provisioning = max(2, max_pending) if max_provisioning is None else max_provisioning
        self.clock = clock
        self.dropped_telemetry = 0
        self.coalesced = 0
        self._pending = 0
        self._provisioning = 0

    async def open(self) -> None:
        """Count the backlog (call once after the database opened)."""
        self._pending, self._provisioning = await self._count()

    async def _count(self) -> tuple[int, int]:
        """Undelivered rows: (bounded by max_pending, provisioning)."""
        rows = await self.db.fetchall(
            "SELECT klass = ?, COUNT(*) FROM outbox WHERE delivered_at IS NULL GROUP BY 1",
            (EventClass.PROVISIONING.value,),
        )
        counts = {bool(p): int(n) for p, n in rows}
        return counts.get(False, 0), counts.get(True, 0)

    @property
    def backlog(self) -> int:
        """Undelivered rows known to this process (exact after open/purge)."""
        return self._pending + self._provisioning

    @property
    def provisioning_backlog(self) -> int:
        """Undelivered provisioning rows (bounded by ``max_provisioning``, not ``max_pending``)."""
        return self._provisioning

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
        if klass is EventClass.PROVISIONING:
            return await self._append_provisioning(tx, topic, bytes(payload))
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
        rec = await self._insert(tx, topic, bytes(payload), klass)
        tx.on_commit(self._appended)
        return rec

    async def _insert(
        self, tx: Tx, topic: str, payload: bytes, klass: EventClass, *, seq: int | None = None,
        at: float | None = None,
    ) -> OutboxRecord:
        event_id = uuid7_str()
        created = tx.at if at is None else at
        row = await tx.fetchone(
            "INSERT INTO outbox(seq, event_id, topic, klass, payload, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?) RETURNING seq",
            (seq, event_id, topic, klass.value, payload, created),
        )
        assert row is not None
        return OutboxRecord(int(row[0]), event_id, topic, klass, payload, created)

    async def _append_provisioning(self, tx: Tx, topic: str, payload: bytes) -> OutboxRecord:
        if self._provisioning >= self.max_provisioning:
            await self._coalesce(tx, topic)
        rec = await self._insert(tx, topic, payload, EventClass.PROVISIONING)
        tx.on_commit(self._provisioned)
        return rec

    async def _coalesce(self, tx: Tx, topic: str) -> None:
        """Fold the oldest half of the pending provisioning rows of ``topic`` into one row."""
        fold = max(2, self.max_provisioning // 2)
        rows = await tx.fetchall(
            "SELECT seq, payload, created_at FROM outbox WHERE klass = ? AND topic = ? "
            "AND delivered_at IS NULL ORDER BY seq LIMIT ?",
            (EventClass.PROVISIONING.value, topic, fold),
        )
        if len(rows) < 2:
            # Every pending provisioning row is on other topics: nothing to fold here.
            raise OutboxFullError(
                f"outbox holds {self._provisioning} undelivered provisioning events (bound "
                f"{self.max_provisioning}) on other topics; provisioning event refused"
            )
        events = sum(_event_count(bytes(p)) for _, p, _ in rows)
        first_seq, last_seq = int(rows[0][0]), int(rows[-1][0])
        await tx.execute(
            "DELETE FROM outbox WHERE klass = ? AND topic = ? AND delivered_at IS NULL "
            "AND seq BETWEEN ? AND ?",
            (EventClass.PROVISIONING.value, topic, first_seq, last_seq),
        )
        summary = {
            "kind": COALESCED_KIND,
            "events": events,
            "first_at": float(rows[0][2]),
            "last_at": float(rows[-1][2]),
            "detail": "provisioning receipts coalesced; each change is in the audit log",
        }
        body = json.dumps(summary, sort_keys=True, separators=(",", ":")).encode()
        await self._insert(tx, topic, body, EventClass.PROVISIONING, seq=last_seq, at=float(rows[-1][2]))
        folded = len(rows) - 1

        def done() -> None:
            self._provisioning -= folded
            self.coalesced += folded

        tx.on_commit(done)

    def _provisioned(self) -> None:
        self._provisioning += 1

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
        done = provisioning = 0
        async with self.db.transaction(durable=False) as tx:
            for i in range(0, len(event_ids), _CHUNK):
                chunk = list(event_ids[i : i + _CHUNK])
                marks = ",".join("?" * len(chunk))
                rows = await tx.fetchall(
                    f"UPDATE outbox SET delivered_at = ? WHERE delivered_at IS NULL "  # noqa: S608  # only '?' placeholders are interpolated
                    f"AND event_id IN ({marks}) RETURNING klass",
                    (tx.at, *chunk),
                )
                done += len(rows)
                provisioning += sum(1 for (k,) in rows if k == EventClass.PROVISIONING.value)

        self._pending = max(0, self._pending - (done - provisioning))
        self._provisioning = max(0, self._provisioning - provisioning)
        return done

    async def purge_delivered(self, older_than_s: float) -> int:
        """Delete rows delivered more than ``older_than_s`` seconds ago; re-syncs the backlog."""
        cutoff = self.clock.wall() - older_than_s
        async with self.db.transaction(durable=False) as tx:
            n = await tx.execute(
                "DELETE FROM outbox WHERE delivered_at IS NOT NULL AND delivered_at < ?",
                (cutoff,),
            )
        self._pending, self._provisioning = await self._count()
        return n


def _event_count(payload: bytes) -> int:
    """1 for a receipt; the folded count for an earlier summary row."""
    try:
        body = json.loads(payload)
    except ValueError:
        return 1
    if isinstance(body, dict) and body.get("kind") == COALESCED_KIND:
        events = body.get("events")
        return events if isinstance(events, int) and events > 0 else 1
    return 1


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
