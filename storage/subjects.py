"""Subject rows as the privacy policy uses them: sealed attributes, last use, retention ages.

Templates and data keys are the gallery's (:mod:`.gallery`); this repository
covers the rest of the ``subjects`` table: the sealed attribute blob
(display name and attributes, under the subject's DEK), the last match, and
the ages that template retention counts from.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from .crypto import AuthenticationFailed, open_sealed, seal, subject_aad
from .db import Database, Tx
from .errors import KeyUnavailableError, TamperError
from .keys import KeyRing

#: Subjects read and decrypted per round trip by :meth:`SubjectRecords.attribute_values`.
_PAGE = 2048

# A subject's last use: its last match, its enrolment, or its newest template.
_LAST_USE = (
    "MAX(COALESCE(s.last_match_at, 0), s.created_at, "
    "COALESCE((SELECT MAX(t.created_at) FROM templates t WHERE t.subject_id = s.subject_id), 0))"
)


async def seal_attributes(tx: Tx, keys: KeyRing, subject_id: str, blob: bytes) -> bool:
    """Seal ``blob`` under the subject's DEK as its attributes; False if it has no DEK."""
    dek = await keys.load_dek(tx, subject_id)
    if dek is None:
        return False
    await tx.execute(
        "UPDATE subjects SET attrs = ?, updated_at = ? WHERE subject_id = ?",
        (seal(dek.aead, blob, subject_aad(subject_id)), tx.at, subject_id),
    )
    await keys.count_uses(tx, dek, 1)
    return True


class SubjectRecords:
    """The ``subjects`` table beyond templates."""

    def __init__(self, db: Database, keys: KeyRing) -> None:
        self._db = db
        self._keys = keys

    async def exists(self, subject_id: str) -> bool:
        row = await self._db.fetchone("SELECT 1 FROM subjects WHERE subject_id = ?", (subject_id,))
        return row is not None

    async def set_attributes(self, tx: Tx, subject_id: str, blob: bytes) -> bool:
        """Seal ``blob`` under the subject's DEK as its attributes; False if it has no DEK."""
        return await seal_attributes(tx, self._keys, subject_id, blob)

    async def record_match(self, tx: Tx, subject_id: str, at: float) -> None:
        """Template retention counts from the last match."""
        await tx.execute(
            "UPDATE subjects SET last_match_at = MAX(COALESCE(last_match_at, 0), ?) WHERE subject_id = ?",
            (at, subject_id),
        )

    async def attribute_values(self, key: str) -> tuple[list[tuple[str, Any]], list[str]]:
        """``(subject id, value)`` of attribute ``key`` for every subject that has it, and the
        subjects whose blob could not be opened here (KEK not held, tampered): one read and one
        decryption pass per page of subjects, off the loop, not a round trip per subject."""
        values: list[tuple[str, Any]] = []
        unopened: list[str] = []
        after = ""
        while True:
            rows = await self._db.fetchall(
                "SELECT s.subject_id, s.attrs, k.kek_id, k.wrapped FROM subjects s "
                "LEFT JOIN vault.subject_keys k ON k.subject_id = s.subject_id "
                "WHERE s.attrs IS NOT NULL AND s.subject_id > ? ORDER BY s.subject_id LIMIT ?",
                (after, _PAGE),
            )
            if not rows:
                return values, unopened
            await asyncio.to_thread(self._open_page, rows, key, values, unopened)
            after = str(rows[-1][0])

    def _open_page(self, rows: list[Any], key: str, values: list[tuple[str, Any]],
                   unopened: list[str]) -> None:
        for sid, blob, kid, wrapped in rows:
            if kid is None:  # no data key (erased meanwhile): the one-subject path decides
                unopened.append(str(sid))
                continue
            try:
                dek = self._keys.unwrap(str(sid), str(kid), bytes(wrapped))
                attrs = json.loads(open_sealed(dek.aead, bytes(blob), subject_aad(str(sid))))["attributes"]
            except (KeyUnavailableError, TamperError, AuthenticationFailed):
                unopened.append(str(sid))
                continue
            if key in attrs:
                values.append((str(sid), attrs[key]))

    async def idle_since(self, cutoff: float) -> list[str]:
        """Subjects whose last use is at or before ``cutoff``."""
        rows = await self._db.fetchall(
            f"SELECT s.subject_id FROM subjects s WHERE {_LAST_USE} <= ?",  # noqa: S608  # constant expression
            (cutoff,),
        )
        return [str(r[0]) for r in rows]

    async def earliest_last_use(self) -> float | None:
        """The oldest last use of any subject (None: no subjects)."""
        row = await self._db.fetchone(f"SELECT MIN({_LAST_USE}) FROM subjects s")  # noqa: S608  # constant expression
        return None if row is None or row[0] is None else float(row[0])

    async def count_with_templates(self, *, except_subject: str | None = None) -> int:
        """Subjects holding at least one usable (not quarantined) template, ``except_subject`` aside."""
        row = await self._db.fetchone(
            "SELECT COUNT(DISTINCT subject_id) FROM templates WHERE quarantined_at IS NULL "
            "AND subject_id != ?",
            (except_subject or "",),
        )
        return int(row[0]) if row is not None else 0

    async def count_templates(self, tx: Tx) -> int:
        row = await tx.fetchone("SELECT COUNT(*) FROM templates")
        return int(row[0]) if row else 0

    async def delete_all(self, tx: Tx) -> int:
        """Teardown: every template and subject; returns the subjects deleted."""
        await tx.execute("DELETE FROM templates")
        return await tx.execute("DELETE FROM subjects")
