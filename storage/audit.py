"""Append-only, hash-chained audit log.

Each row stores ``hash = sha256(prev_hash || canonical(row))`` where
``canonical`` is compact JSON of ``[seq, at, actor, action, subject_id,
detail]`` and the first row's ``prev_hash`` is 64 zeros (or the anchor left
by a retention purge). Editing, deleting, inserting or reordering rows breaks
the chain at the first affected row, which :func:`verify_chain` names.

Rows hold actor, action, pseudonymous subject id, time and small scalar
details (counts, ids, reasons): never biometric data, names or images.
Appends happen inside the caller's transaction, so an audit row commits
together with the change it records, or not at all.
"""

from __future__ import annotations

import enum
import hashlib
import json
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .db import Database, Tx
from .errors import InvalidInputError

GENESIS = "0" * 64
ANCHOR_KEY = "audit.anchor"
Scalar = str | int | float | bool | None


class AuditAction(enum.StrEnum):
    """Actions the device audits. Other components may use further stable strings."""

    ENROL = "enrol"
    ERASE = "erase"
    RECTIFY = "rectify"
    CONSENT_CHANGE = "consent_change"
    EXPORT = "export"
    KEY_INIT = "key_init"
    KEY_ROTATION = "key_rotation"
    LICENCE_CHANGE = "licence_change"
    DOOR_COMMAND = "door_command"
    RETENTION_SWEEP = "retention_sweep"
    QUARANTINE = "quarantine"
    REPAIR = "repair"
    TEARDOWN = "teardown"


@dataclass(frozen=True)
class AuditRecord:
    seq: int
    at: float
    actor: str
    action: str
    subject_id: str | None
    detail: str
    prev_hash: str
    hash: str


@dataclass(frozen=True)
class AuditVerification:
    """Result of walking the chain. ``first_broken`` is None when it is intact."""

    rows: int
    first_broken: int | None
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.first_broken is None


def canonical(  # noqa: PLR0917  # the columns of a row, in chain order
    seq: int, at: float, actor: str, action: str, subject_id: str | None, detail: str
) -> bytes:
    return json.dumps(
        [seq, at, actor, action, subject_id, detail], ensure_ascii=False, separators=(",", ":")
    ).encode("utf-8")


def chain_hash(prev_hash: str, row: bytes) -> str:
    return hashlib.sha256(bytes.fromhex(prev_hash) + row).hexdigest()


def _detail_text(detail: Mapping[str, Scalar] | None) -> str:
    if not detail:
        return "{}"
    for k, v in detail.items():
        if not isinstance(k, str) or not (v is None or isinstance(v, str | int | float | bool)):
            raise InvalidInputError(f"audit detail {k!r}: only scalar values are allowed")
        if isinstance(v, str) and len(v) > 256:
            raise InvalidInputError(f"audit detail {k!r}: value longer than 256 characters")
    return json.dumps(dict(detail), sort_keys=True, ensure_ascii=False, separators=(",", ":"))


async def append(
    tx: Tx,
    *,
    actor: str,
    action: str,
    subject_id: str | None = None,
    detail: Mapping[str, Scalar] | None = None,
) -> AuditRecord:
    """Append one row inside ``tx`` (a BEGIN IMMEDIATE transaction serialises the chain)."""
    (record,) = await append_many(tx, [PendingRow(actor, action, subject_id, detail)])
    return record


@dataclass(frozen=True)
class PendingRow:
    """One row for :func:`append_many`."""

    actor: str
    action: str
    subject_id: str | None
    detail: Mapping[str, Scalar] | None = None


async def append_many(tx: Tx, rows: list[PendingRow]) -> list[AuditRecord]:
    """Append several rows in order with one read and one ``executemany``."""
    if not rows:
        return []
    last = await tx.fetchone("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1")
    if last is None:
        anchor = await tx.fetchone("SELECT value FROM kv_state WHERE key = ?", (ANCHOR_KEY,))
        seq, prev = (1, GENESIS) if anchor is None else _parse_anchor(str(anchor[0]))
    else:
        seq, prev = int(last[0]) + 1, str(last[1])
    out: list[AuditRecord] = []
    for r in rows:
        if not r.actor or not r.action:
            raise InvalidInputError("audit rows need an actor and an action")
        text = _detail_text(r.detail)
        h = chain_hash(prev, canonical(seq, tx.at, r.actor, str(r.action), r.subject_id, text))
        out.append(AuditRecord(seq, tx.at, r.actor, str(r.action), r.subject_id, text, prev, h))
        seq, prev = seq + 1, h
    await tx.executemany(
        "INSERT INTO audit(seq, at, actor, action, subject_id, detail, prev_hash, hash) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [(a.seq, a.at, a.actor, a.action, a.subject_id, a.detail, a.prev_hash, a.hash) for a in out],
    )
    return out


def _parse_anchor(value: str) -> tuple[int, str]:
    seq, h = value.split(":", 1)
    return int(seq) + 1, h


async def purge_before(tx: Tx, at: float) -> int:
    """Delete rows older than ``at`` (retention), keeping the chain verifiable via an anchor."""
    row = await tx.fetchone("SELECT seq, hash FROM audit WHERE at < ? ORDER BY seq DESC LIMIT 1", (at,))
    if row is None:
        return 0
    n = await tx.execute("DELETE FROM audit WHERE seq <= ?", (int(row[0]),))
    await tx.execute(
        "INSERT INTO kv_state(key, value, updated_at) VALUES (?, ?, ?) "
        "ON CONFLICT(key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
        (ANCHOR_KEY, f"{int(row[0])}:{row[1]}", tx.at),
    )
    return n


def verify_chain(path: Path | str) -> AuditVerification:
    """Walk the chain in a read-only connection (blocking: call via a thread)."""
    uri = f"file:{Path(path)}?mode=ro"
    conn = sqlite3.connect(uri, uri=True)
    # A flipped byte may make a text column invalid UTF-8: keep it decodable so
    # the walk can name the row instead of dying on the cursor.
    conn.text_factory = lambda b: b.decode("utf-8", "surrogateescape")
    try:
        anchor = conn.execute("SELECT value FROM kv_state WHERE key = ?", (ANCHOR_KEY,)).fetchone()
        expect_seq, prev = (1, GENESIS) if anchor is None else _parse_anchor(str(anchor[0]))
        rows = 0
        cur = conn.execute(
            "SELECT seq, at, actor, action, subject_id, detail, prev_hash, hash FROM audit ORDER BY seq"
        )
        for seq, at, actor, action, subject_id, detail, prev_hash, h in cur:
            rows += 1
            if seq != expect_seq:
                return AuditVerification(rows, expect_seq, f"row {expect_seq} is missing")
            if prev_hash != prev:
                return AuditVerification(rows, seq, "prev_hash does not match the previous row")
            try:
                calc = chain_hash(prev, canonical(seq, at, actor, action, subject_id, detail))
            except (TypeError, ValueError):
                return AuditVerification(rows, seq, "row is not well-formed")
            if calc != h:
                return AuditVerification(rows, seq, "row content does not match its hash")
            prev, expect_seq = h, seq + 1
        return AuditVerification(rows, None)
    finally:
        conn.close()


class AuditTail:
    """Reads new audit rows of some actions: how another process's changes are noticed.

    ``PRAGMA data_version`` changes only when another connection committed,
    so a poll that finds it unchanged costs one pragma.
    """

    def __init__(self, db: Database) -> None:
        self._db = db

    async def data_version(self) -> int:
        row = await self._db.fetchone("PRAGMA data_version")
        return int(row[0]) if row else 0

    async def last_seq(self) -> int:
        row = await self._db.fetchone("SELECT COALESCE(MAX(seq), 0) FROM audit")
        return int(row[0]) if row else 0

    async def after(self, seq: int, actions: Sequence[str]) -> list[tuple[int, str, str | None]]:
        """``(seq, action, subject_id)`` of rows after ``seq`` with one of ``actions``, in order."""
        marks = ", ".join("?" for _ in actions)
        rows = await self._db.fetchall(
            f"SELECT seq, action, subject_id FROM audit WHERE seq > ? AND action IN ({marks}) "  # noqa: S608  # placeholders only
            "ORDER BY seq",
            (seq, *actions),
        )
        return [(int(r[0]), str(r[1]), None if r[2] is None else str(r[2])) for r in rows]
