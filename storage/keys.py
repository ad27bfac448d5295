"""The in-process key ring: KEKs by id, the KEK check, and per-subject DEKs.

The database stores ``active_kek_id`` (the KEK check value, see
:func:`facegate.storage.crypto.kek_id`) and, while a rotation runs,
``rotation_target``. Start-up accepts a KEK whose id is either of those;
anything else is :class:`WrongKekError` and nothing is written. A subject's
wrapped DEK records which KEK wrapped it, so a half-finished rotation leaves
every subject readable with the old or the new KEK.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from dataclasses import dataclass

import structlog
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .crypto import (
    DEK_MAX_USES,
    KEK_MAX_WRAPS,
    AuthenticationFailed,
    kek_id,
    unwrap_dek,
)
from .db import Database, Tx
from .errors import KekSourceError, KeyMaterialError, KeyUnavailableError, TamperError, WrongKekError
from .kek import KekSource, KekSourceKind, read_key_file, read_source

_log = structlog.get_logger("facegate.storage")

ACTIVE = "active_kek_id"
TARGET = "rotation_target"
WRAPS = "kek_wraps"
SALT = "scrypt_salt"
SALT_NEXT = "scrypt_salt_next"


async def get_meta(tx: Tx | Database, name: str) -> str | None:
    row = await tx.fetchone("SELECT value FROM vault.key_meta WHERE name = ?", (name,))
    return None if row is None else str(row[0])


async def set_meta(tx: Tx, name: str, value: str | None) -> None:
    if value is None:
        await tx.execute("DELETE FROM vault.key_meta WHERE name = ?", (name,))
    else:
        await tx.execute(
            "INSERT INTO vault.key_meta(name, value) VALUES (?, ?) "
            "ON CONFLICT(name) DO UPDATE SET value = excluded.value",
            (name, value),
        )


@dataclass(frozen=True)
class Dek:
    """An unwrapped data key (memory only)."""

    subject_id: str
    aead: AESGCM
    uses: int


class KeyRing:
    """KEKs this process holds, keyed by id, checked against the database."""

    def __init__(self, db: Database, source: KekSource) -> None:
        self.db = db
        self.source = source
        self._keks: dict[str, AESGCM] = {}
        self._lock = asyncio.Lock()

    @property
    def held_ids(self) -> frozenset[str]:
        return frozenset(self._keks)

    def get(self, kid: str) -> AESGCM | None:
        return self._keks.get(kid)

    def add(self, kek: bytes) -> str:
        kid = kek_id(kek)
        self._keks[kid] = AESGCM(kek)
        return kid

    async def open(self, *, register: bool = True) -> str:
        """Load the KEK, verify it against the database; returns its id.

        On a fresh database (no active KEK, no wrapped keys) with ``register``,
        the KEK becomes the active one. Raises WrongKekError (naming the source)
        when the KEK belongs to another database; nothing is modified then.
        """
        salt_hex = await get_meta(self.db, SALT)
        if self.source.kind is KekSourceKind.PASSPHRASE and salt_hex is None and register:
            async with self.db.transaction() as tx:
                salt_hex = await get_meta(tx, SALT) or os.urandom(16).hex()
                await set_meta(tx, SALT, salt_hex)
        try:
            kek = await read_source(self.source, bytes.fromhex(salt_hex) if salt_hex else None)
        except KekSourceError as exc:
            hint = " (run 'facegate keys init')"
            if await get_meta(self.db, ACTIVE) is None or hint not in str(exc):
                raise  # keep the specific error (permissions, format): its advice is right as it is
            # Initialised database: 'keys init' would refuse (it already has a KEK); say what helps.
            detail = str(exc).replace(hint, "")
            raise KekSourceError(
                f"{detail}, but {self.db.path} is already initialised with a KEK: restore that key "
                "(from your backup or secret store) to this source; 'facegate keys init' would refuse"
            ) from None
        kid = kek_id(kek)
        active = await get_meta(self.db, ACTIVE)
        target = await get_meta(self.db, TARGET)
        if active is None:
            row = await self.db.fetchone(
                "SELECT (SELECT COUNT(*) FROM vault.subject_keys), (SELECT COUNT(*) FROM subjects)"
            )
            if row is not None and (int(row[0]) > 0 or int(row[1]) > 0):
                raise KeyMaterialError(
                    f"key vault {self.db.vault_path} is missing or has no KEK check value but "
                    f"{self.db.path} holds {int(row[1])} subject(s); refusing to start "
                    "(restore the vault that belongs to this database)"
                )
            if not register:
                raise KekSourceError(f"{self.db.path} has no KEK yet (run 'facegate keys init')")
            async with self.db.transaction() as tx:
                if await get_meta(tx, ACTIVE) is None:
                    await set_meta(tx, ACTIVE, kid)
                    await set_meta(tx, WRAPS, "0")
                active = await get_meta(tx, ACTIVE)
            _log.info("storage.kek_registered", key_source=self.source.describe())
        self.add(kek)
        await self._load_next()
        wanted = {active, target} - {None}
        if not wanted & self.held_ids:
            self._keks.clear()
            raise WrongKekError(
                f"the KEK from {self.source.describe()} does not match {self.db.path} "
                f"(key id {kid[:8]}, database expects {str(active)[:8]}); no data was changed"
            )
        if kid not in wanted:
            _log.warning("storage.kek_rotation_unfinished", key_source=self.source.describe())
        return kid

    async def _load_next(self) -> None:
        """Also hold a rotation's next key file (FILE source) when it exists."""
        nxt = self.source.next_file
        if nxt is None or not await asyncio.to_thread(nxt.exists):
            return
        try:
            self.add(await asyncio.to_thread(read_key_file, nxt, f"key file {nxt}"))
        except KekSourceError as exc:
            _log.warning("storage.next_kek_unreadable", reason=str(exc))

    async def refresh(self, tx: Tx | None = None) -> None:
        """Re-read the source (after a rotation by another process).

        Pass the open transaction when called inside one (the database lock is held).
        """
        async with self._lock:
            salt_hex = await get_meta(tx if tx is not None else self.db, SALT)
            # The primary source may be gone mid-rotation; the .next file still counts.
            with contextlib.suppress(KekSourceError):
                self.add(await read_source(self.source, bytes.fromhex(salt_hex) if salt_hex else None))
            await self._load_next()

    async def wrapping_key(self, tx: Tx) -> tuple[str, AESGCM]:
        """The KEK new DEKs are wrapped with: the rotation target if held, else the active one."""
        for attempt in range(2):
            target = await get_meta(tx, TARGET)
            active = await get_meta(tx, ACTIVE)
            for kid in (target, active):
                if kid is not None and kid in self._keks:
                    return kid, self._keks[kid]
            if attempt == 0:
                await self.refresh(tx)
        raise KeyUnavailableError(
            f"this process does not hold the database's active KEK ({str(active)[:8]}); "
            f"the key was rotated: restart with the new key from {self.source.describe()}"
        )

    async def count_wraps(self, tx: Tx, n: int) -> None:
        wraps = int(await get_meta(tx, WRAPS) or "0") + n
        if wraps > KEK_MAX_WRAPS:
            raise KeyMaterialError("the KEK has wrapped its maximum number of keys; rotate it")
        await set_meta(tx, WRAPS, str(wraps))

    def unwrap(self, subject_id: str, kid: str, wrapped: bytes, uses: int = 0) -> Dek:
        """Unwrap a stored DEK. KeyUnavailableError if the KEK is not held; TamperError if bad."""
        kek = self._keks.get(kid)
        if kek is None:
            raise KeyUnavailableError(
                f"subject {subject_id}: its key is wrapped under KEK {kid[:8]}, not held here"
            )
        try:
            return Dek(subject_id, AESGCM(unwrap_dek(kek, kid, subject_id, wrapped)), uses)
        except AuthenticationFailed:
            raise TamperError(
                f"subject {subject_id}: wrapped data key failed authentication",
                subject_id=subject_id,
            ) from None

    async def load_dek(self, tx: Tx | Database, subject_id: str) -> Dek | None:
        row = await tx.fetchone(
            "SELECT kek_id, wrapped, uses FROM vault.subject_keys WHERE subject_id = ?", (subject_id,)
        )
        if row is None:
            return None
        if str(row[0]) not in self._keks:
            await self.refresh(tx if isinstance(tx, Tx) else None)
        return self.unwrap(subject_id, str(row[0]), bytes(row[1]), int(row[2]))

    async def count_uses(self, tx: Tx, dek: Dek, n: int) -> None:
        """Record ``n`` more encryptions under ``dek`` (nonce budget, see crypto.py)."""
        if dek.uses + n > DEK_MAX_USES:
            raise KeyMaterialError(f"subject {dek.subject_id}: data key use limit reached")
        await tx.execute(
            "UPDATE vault.subject_keys SET uses = uses + ? WHERE subject_id = ?", (n, dek.subject_id)
        )


async def shred_vault(tx: Tx) -> int:
    """Teardown: delete every wrapped data key and every KEK fact; returns the keys shredded.

    Without the vault rows no copy of the main file decrypts (crypto-shredding).
    """
    shredded = await tx.execute("DELETE FROM vault.subject_keys")
    await tx.execute("DELETE FROM vault.key_meta")
    return shredded


async def count_subject_keys(db: Database) -> int:
    """How many subject data keys the vault holds (0 after teardown)."""
    row = await db.fetchone("SELECT COUNT(*) FROM vault.subject_keys")
    return int(row[0]) if row else 0
