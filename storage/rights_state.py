"""Typed access to the privacy-rights tables of migration 2 (policy decides, storage stores).

* ``subject_restrictions``: restricted subjects (kept, never matched);
* ``legal_holds``: holds on one subject or (``subject_id`` None) the device;
* ``deferred_erasures``: erasures a hold deferred, run when it lapses;
* ``incidents``: security incidents with their stable id and the response taken.

Every writer takes the caller's :class:`Tx` so the change commits together
with its audit row and receipt, or not at all. Rows hold ids, reason codes
and times only: no names, no biometric data.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from .db import Row, Tx


class Source(Protocol):
    """A :class:`Tx` or the :class:`Database` (reads)."""

    async def fetchone(self, sql: str, params: Sequence[object] = ()) -> Row | None: ...

    async def fetchall(self, sql: str, params: Sequence[object] = ()) -> list[Row]: ...


# -- restriction ----------------------------------------------------------------------------


async def restrict(tx: Tx, subject_id: str, *, actor: str, reason: str) -> bool:
    """Mark ``subject_id`` restricted; False if it already was."""
    n = await tx.execute(
        "INSERT INTO subject_restrictions(subject_id, restricted_at, actor, reason) VALUES (?, ?, ?, ?) "
        "ON CONFLICT(subject_id) DO NOTHING",
        (subject_id, tx.at, actor, reason),
    )
    return n > 0


async def unrestrict(tx: Tx, subject_id: str) -> bool:
    """Lift the restriction; False if the subject was not restricted."""
    return await tx.execute("DELETE FROM subject_restrictions WHERE subject_id = ?", (subject_id,)) > 0


async def restricted_at(src: Source, subject_id: str) -> float | None:
    row = await src.fetchone(
        "SELECT restricted_at FROM subject_restrictions WHERE subject_id = ?", (subject_id,)
    )
    return None if row is None else float(row[0])


async def restricted_ids(src: Source) -> list[str]:
    rows = await src.fetchall("SELECT subject_id FROM subject_restrictions ORDER BY subject_id")
    return [str(r[0]) for r in rows]


# -- legal holds --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Hold:
    """One legal hold. ``subject_id`` None: the whole device."""

    hold_id: str
    subject_id: str | None
    reason: str
    actor: str
    set_at: float
    expires_at: float
    released_at: float | None
    lapsed_at: float | None

    def active(self, now: float) -> bool:
        return self.released_at is None and self.lapsed_at is None and now < self.expires_at


_HOLD = "hold_id, subject_id, reason, actor, set_at, expires_at, released_at, lapsed_at"


def _hold(r: Row) -> Hold:
    return Hold(
        str(r[0]),
        None if r[1] is None else str(r[1]),
        str(r[2]),
        str(r[3]),
        float(r[4]),
        float(r[5]),
        None if r[6] is None else float(r[6]),
        None if r[7] is None else float(r[7]),
    )


async def add_hold(
    tx: Tx, hold_id: str, subject_id: str | None, *, reason: str, actor: str, expires_at: float
) -> Hold:
    await tx.execute(
        f"INSERT INTO legal_holds({_HOLD}) VALUES (?, ?, ?, ?, ?, ?, NULL, NULL)",  # noqa: S608  # constant column list
        (hold_id, subject_id, reason, actor, tx.at, expires_at),
    )
    return Hold(hold_id, subject_id, reason, actor, tx.at, expires_at, None, None)


async def get_hold(src: Source, hold_id: str) -> Hold | None:
    row = await src.fetchone(f"SELECT {_HOLD} FROM legal_holds WHERE hold_id = ?", (hold_id,))  # noqa: S608  # constant column list
    return None if row is None else _hold(row)


async def end_hold(tx: Tx, hold_id: str, *, released: bool) -> bool:
    """Mark the hold released (by command) or lapsed (expiry reached); False if already ended."""
    column = "released_at" if released else "lapsed_at"
    return (
        await tx.execute(
            f"UPDATE legal_holds SET {column} = ? "  # noqa: S608  # column is one of two constants
            "WHERE hold_id = ? AND released_at IS NULL AND lapsed_at IS NULL",
            (tx.at, hold_id),
        )
        > 0
    )


async def open_holds(src: Source) -> list[Hold]:
    """Holds neither released nor marked lapsed (some may be past their expiry)."""
    rows = await src.fetchall(
        f"SELECT {_HOLD} FROM legal_holds WHERE released_at IS NULL AND lapsed_at IS NULL "  # noqa: S608  # constant column list
        "ORDER BY set_at"
    )
    return [_hold(r) for r in rows]


async def holds_for(src: Source, subject_id: str) -> list[Hold]:
    """Every hold (any state) on ``subject_id`` or on the whole device."""
    rows = await src.fetchall(
        f"SELECT {_HOLD} FROM legal_holds WHERE subject_id = ? OR subject_id IS NULL ORDER BY set_at",  # noqa: S608  # constant column list
        (subject_id,),
    )
    return [_hold(r) for r in rows]


# -- deferred erasures ----------------------------------------------------------------------------


async def defer_erasure(tx: Tx, subject_id: str, *, reason: str, actor: str) -> bool:
    """Record an erasure a hold deferred; False if one was already pending."""
    n = await tx.execute(
        "INSERT INTO deferred_erasures(subject_id, reason, actor, requested_at) VALUES (?, ?, ?, ?) "
        "ON CONFLICT(subject_id) DO NOTHING",
        (subject_id, reason, actor, tx.at),
    )
    return n > 0


async def pending_erasures(src: Source) -> list[tuple[str, str]]:
    """(subject id, reason) of every deferred erasure, oldest first."""
    rows = await src.fetchall("SELECT subject_id, reason FROM deferred_erasures ORDER BY requested_at")
    return [(str(r[0]), str(r[1])) for r in rows]


async def erasure_pending(src: Source, subject_id: str) -> bool:
    row = await src.fetchone("SELECT 1 FROM deferred_erasures WHERE subject_id = ?", (subject_id,))
    return row is not None


async def forget_subject(tx: Tx, subject_id: str) -> None:
    """On erasure: the subject's restriction and pending erasure go with its data."""
    await tx.execute("DELETE FROM subject_restrictions WHERE subject_id = ?", (subject_id,))
    await tx.execute("DELETE FROM deferred_erasures WHERE subject_id = ?", (subject_id,))


# -- incidents ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IncidentRow:
    incident_id: str
    at: float
    kind: str
    severity: str
    response: str
    source: str
    outcome: str


async def add_incident(tx: Tx, row: IncidentRow) -> None:
    await tx.execute(
        "INSERT INTO incidents(incident_id, at, kind, severity, response, source, outcome) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        (row.incident_id, row.at, row.kind, row.severity, row.response, row.source, row.outcome),
    )


async def incident_counts(src: Source) -> dict[str, int]:
    rows = await src.fetchall("SELECT kind, COUNT(*) FROM incidents GROUP BY kind ORDER BY kind")
    return {str(r[0]): int(r[1]) for r in rows}


async def incidents(src: Source) -> list[IncidentRow]:
    rows = await src.fetchall(
        "SELECT incident_id, at, kind, severity, response, source, outcome FROM incidents ORDER BY at"
    )
    return [IncidentRow(*(str(v) if i != 1 else float(v) for i, v in enumerate(r))) for r in rows]  # type: ignore[arg-type]  # positional row -> typed fields
