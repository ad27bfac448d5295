"""The ``policy_snapshots`` table: sealed decision snapshots (face crops), only when turned on.

Storage seals and opens them (AES-256-GCM; the AAD binds snapshot and
decision ids) with the key the caller holds (the policy's device snapshot
key); the policy decides whether any may be kept and for how long.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .crypto import AuthenticationFailed, open_sealed, seal
from .db import Database, Tx
from .errors import TamperError
from .uuid7 import uuid7_str


def _aad(snapshot_id: str, decision_id: str) -> bytes:
    return b"\x00".join((b"facegate/snapshot/v1", snapshot_id.encode(), decision_id.encode()))


class Snapshots:
    """Sealed decision snapshots."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def put(self, tx: Tx, *, key: bytes, decision_id: str, subject_id: str | None, image: bytes) -> str:
        """Seal ``image`` under ``key`` and store it; returns the new snapshot id."""
        snapshot_id = uuid7_str()
        sealed = seal(AESGCM(key), image, _aad(snapshot_id, decision_id))
        await tx.execute(
            "INSERT INTO policy_snapshots(snapshot_id, decision_id, subject_id, created_at, ciphertext) "
            "VALUES (?, ?, ?, ?, ?)",
            (snapshot_id, decision_id, subject_id, tx.at, sealed),
        )
        return snapshot_id

    async def get(self, snapshot_id: str, *, key: bytes) -> bytes | None:
        """The opened snapshot, None if there is none; TamperError if it fails authentication."""
        row = await self._db.fetchone(
            "SELECT decision_id, ciphertext, subject_id FROM policy_snapshots WHERE snapshot_id = ?",
            (snapshot_id,),
        )
        if row is None:
            return None
        try:
            return open_sealed(AESGCM(key), bytes(row[1]), _aad(snapshot_id, str(row[0])))
        except AuthenticationFailed:
            raise TamperError(
                f"snapshot {snapshot_id} failed authentication", subject_id=str(row[2] or "")
            ) from None

    async def delete_for_subject(self, tx: Tx, subject_id: str) -> int:
        return await tx.execute("DELETE FROM policy_snapshots WHERE subject_id = ?", (subject_id,))

    async def purge_before(self, tx: Tx, cutoff: float) -> int:
        return await tx.execute("DELETE FROM policy_snapshots WHERE created_at < ?", (cutoff,))

    async def oldest(self) -> float | None:
        """Creation time of the oldest snapshot (None: none kept)."""
        row = await self._db.fetchone("SELECT MIN(created_at) FROM policy_snapshots")
        return None if row is None or row[0] is None else float(row[0])

    async def delete_all(self, tx: Tx) -> int:
        """Teardown: every snapshot."""
        return await tx.execute("DELETE FROM policy_snapshots")
