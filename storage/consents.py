"""Repositories of consent records and age evidence (tables ``consents`` and ``policy_age``).

Storage owns the tables and the SQL; the privacy policy owns the meaning
(``facegate.policy.consent``): states, kinds and the enrolment rule. Rows
travel as typed frozen dataclasses of plain values. Every method reads
through ``tx`` when given (inside a transaction the database lock is held)
and writes only inside one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import astuple, dataclass

from .db import Database, Row, Tx

_COLUMNS = (
    "consent_id, subject_id, kind, purpose, state, granted_at, method, notice_version, actor, "
    "evidence_digest, expires_at, guardian_id, guardian_relationship, guardian_evidence_digest, "
    "changed_at"
)


@dataclass(frozen=True, slots=True)
class ConsentRow:
    """One consent record, as stored."""

    consent_id: str
    subject_id: str
    kind: str
    purpose: str
    state: str
    granted_at: float | None
    method: str
    notice_version: str
    actor: str
    evidence_digest: str
    expires_at: float | None
    guardian_id: str | None
    guardian_relationship: str | None
    guardian_evidence_digest: str | None
    changed_at: float


@dataclass(frozen=True, slots=True)
class AgeRow:
    """The age evidence of one subject, as stored (ISO birth date and/or age band code)."""

    subject_id: str
    birth_date: str | None
    age_band: str | None
    recorded_at: float


def _opt_float(v: object) -> float | None:
    return None if v is None else float(str(v))


def _opt_str(v: object) -> str | None:
    return None if v is None else str(v)


def _consent(r: Row) -> ConsentRow:
    return ConsentRow(
        consent_id=str(r[0]),
        subject_id=str(r[1]),
        kind=str(r[2]),
        purpose=str(r[3]),
        state=str(r[4]),
        granted_at=_opt_float(r[5]),
        method=str(r[6]),
        notice_version=str(r[7]),
        actor=str(r[8]),
        evidence_digest=str(r[9]),
        expires_at=_opt_float(r[10]),
        guardian_id=_opt_str(r[11]),
        guardian_relationship=_opt_str(r[12]),
        guardian_evidence_digest=_opt_str(r[13]),
        changed_at=float(str(r[14])),
    )


class Consents:
    """The ``consents`` table (no foreign key: consent outlives erasure as evidence)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def get(self, consent_id: str, *, tx: Tx | None = None) -> ConsentRow | None:
        src = tx if tx is not None else self._db
        row = await src.fetchone(
            f"SELECT {_COLUMNS} FROM consents WHERE consent_id = ?",  # noqa: S608  # constant column list
            (consent_id,),
        )
        return None if row is None else _consent(row)

    async def for_subject(self, subject_id: str, *, tx: Tx | None = None) -> list[ConsentRow]:
        src = tx if tx is not None else self._db
        rows = await src.fetchall(
            f"SELECT {_COLUMNS} FROM consents WHERE subject_id = ? "  # noqa: S608  # constant column list
            "ORDER BY consent_id",
            (subject_id,),
        )
        return [_consent(r) for r in rows]

    async def insert(self, tx: Tx, row: ConsentRow) -> None:
        await tx.execute(
            f"INSERT INTO consents({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",  # noqa: S608  # constant column list
            astuple(row),
        )

    async def set_state(
        self, tx: Tx, consent_id: str, *, state: str, granted_at: float | None, changed_at: float
    ) -> None:
        await tx.execute(
            "UPDATE consents SET state = ?, granted_at = ?, changed_at = ? WHERE consent_id = ?",
            (state, granted_at, changed_at, consent_id),
        )

    async def due_to_expire(self, tx: Tx, *, active_state: str) -> list[ConsentRow]:
        """Records in ``active_state`` whose expiry is at or before the transaction's time."""
        rows = await tx.fetchall(
            f"SELECT {_COLUMNS} FROM consents WHERE state = ? "  # noqa: S608  # constant column list
            "AND expires_at IS NOT NULL AND expires_at <= ?",
            (active_state, tx.at),
        )
        return [_consent(r) for r in rows]

    async def next_expiry(self, *, active_state: str) -> float | None:
        """The earliest expiry of a record in ``active_state`` (None: none expires)."""
        row = await self._db.fetchone(
            "SELECT MIN(expires_at) FROM consents WHERE state = ? AND expires_at IS NOT NULL",
            (active_state,),
        )
        return None if row is None else _opt_float(row[0])

    async def purge_closed(self, tx: Tx, *, states: Sequence[str], changed_before: float) -> int:
        """Delete records in one of ``states`` (two: withdrawn, expired) last changed before the cutoff."""
        a, b = states
        return await tx.execute(
            "DELETE FROM consents WHERE state IN (?, ?) AND changed_at < ?", (a, b, changed_before)
        )

    async def delete_all(self, tx: Tx) -> int:
        """Teardown: every record."""
        return await tx.execute("DELETE FROM consents")


class Ages:
    """The ``policy_age`` table: a birth date or an age band per subject."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def get(self, subject_id: str, *, tx: Tx | None = None) -> AgeRow | None:
        src = tx if tx is not None else self._db
        row = await src.fetchone(
            "SELECT birth_date, age_band, recorded_at FROM policy_age WHERE subject_id = ?",
            (subject_id,),
        )
        if row is None:
            return None
        return AgeRow(subject_id, _opt_str(row[0]), _opt_str(row[1]), float(row[2]))

    async def put(
        self, tx: Tx, subject_id: str, *, birth_date: str | None, age_band: str | None, actor: str
    ) -> None:
        """Insert or replace the subject's record (at the transaction's time)."""
        await tx.execute(
            "INSERT INTO policy_age(subject_id, birth_date, age_band, recorded_at, actor) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT(subject_id) DO UPDATE SET "
            "birth_date = excluded.birth_date, age_band = excluded.age_band, "
            "recorded_at = excluded.recorded_at, actor = excluded.actor",
            (subject_id, birth_date, age_band, tx.at, actor),
        )

    async def delete(self, tx: Tx, subject_id: str) -> int:
        return await tx.execute("DELETE FROM policy_age WHERE subject_id = ?", (subject_id,))

    async def purge_orphans(self, tx: Tx, *, live_states: Sequence[str]) -> int:
        """Delete records of subjects neither enrolled nor holding a consent in ``live_states`` (two)."""
        a, b = live_states
        return await tx.execute(
            "DELETE FROM policy_age WHERE subject_id NOT IN (SELECT subject_id FROM subjects) "
            "AND subject_id NOT IN (SELECT subject_id FROM consents WHERE state IN (?, ?))",
            (a, b),
        )

    async def delete_all(self, tx: Tx) -> int:
        """Teardown: every record."""
        return await tx.execute("DELETE FROM policy_age")
