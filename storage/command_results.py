"""Typed access to ``command_results``: the outcome of each actuating command, by nonce.

The command service records the outcome of an authenticated actuating verb
(``open``, ``lockdown``, ``release``) here; a retry carrying the same signed
nonce is answered from this table (``"replayed": true``) instead of moving the
relay again, also after a device restart (issue 10.10). Rows older than the
command time window are pruned on write: a command that old fails the time
check anyway. Nothing personal is stored (verb, result code, the verb's result).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .db import Database


@dataclass(frozen=True, slots=True)
class StoredResult:
    """One recorded command outcome."""

    nonce: str
    verb: str
    sig_digest: str
    ok: bool
    code: str
    message: str
    result: dict[str, Any]
    at: float


class CommandResults:
    """The ``command_results`` table (created by schema migration 4)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def get(self, nonce: str) -> StoredResult | None:
        row = await self.db.fetchone(
            "SELECT nonce, verb, sig_digest, ok, code, message, result, at "
            "FROM command_results WHERE nonce = ?",
            (nonce,),
        )
        if row is None:
            return None
        loaded = json.loads(str(row[6]))
        return StoredResult(
            nonce=str(row[0]),
            verb=str(row[1]),
            sig_digest=str(row[2]),
            ok=bool(row[3]),
            code=str(row[4]),
            message=str(row[5]),
            result=loaded if isinstance(loaded, dict) else {},
            at=float(row[7]),
        )

    async def put(self, stored: StoredResult, *, prune_before: float) -> None:
        """Record ``stored`` (first write wins) and drop rows older than ``prune_before``."""
        async with self.db.transaction() as tx:
            await tx.execute("DELETE FROM command_results WHERE at < ?", (prune_before,))
            await tx.execute(
                "INSERT OR IGNORE INTO command_results"
                "(nonce, verb, sig_digest, ok, code, message, result, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    stored.nonce,
                    stored.verb,
                    stored.sig_digest,
                    int(stored.ok),
                    stored.code,
                    stored.message,
                    json.dumps(stored.result, sort_keys=True, separators=(",", ":")),
                    stored.at,
                ),
            )

    async def count(self) -> int:
        row = await self.db.fetchone("SELECT COUNT(*) FROM command_results")
        return 0 if row is None else int(row[0])
