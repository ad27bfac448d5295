"""Typed access to the ``passages`` table of migration 3 (anti-passback state).

The access layer (:mod:`facegate.handlers.access.journal`) decides; storage
stores. One row per subject: its last passage's direction and wall time.
Rows hold pseudonymous ids, a direction and a time only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from .db import Row, Tx


class Source(Protocol):
    """A :class:`Tx` or the :class:`Database` (reads)."""

    async def fetchall(self, sql: str, params: Sequence[object] = ()) -> list[Row]: ...


@dataclass(frozen=True, slots=True)
class PassageRow:
    """The last passage of one subject (``at`` is wall-clock POSIX time)."""

    subject_id: str
    direction: str
    at: float


async def record_passage(tx: Tx, subject_id: str, direction: str, at: float) -> None:
    """Remember ``subject_id``'s last passage (replaces the previous one)."""
    await tx.execute(
        "INSERT INTO passages(subject_id, direction, at) VALUES (?, ?, ?) "
        "ON CONFLICT(subject_id) DO UPDATE SET direction = excluded.direction, at = excluded.at",
        (subject_id, direction, at),
    )


async def passages_since(src: Source, since: float) -> list[PassageRow]:
    """Passages at or after ``since`` (oldest first)."""
    rows = await src.fetchall(
        "SELECT subject_id, direction, at FROM passages WHERE at >= ? ORDER BY at", (since,)
    )
    return [PassageRow(str(r[0]), str(r[1]), float(r[2])) for r in rows]


async def prune_passages(tx: Tx, before: float) -> int:
    """Forget passages older than ``before``; returns how many."""
    return await tx.execute("DELETE FROM passages WHERE at < ?", (before,))


async def forget_passages(tx: Tx, subject_id: str) -> int:
    """Forget one subject's passage (erasure)."""
    return await tx.execute("DELETE FROM passages WHERE subject_id = ?", (subject_id,))
