"""``keys init`` and the crash-safe ``keys rotate``.

Rotation protocol (each step durable before the next):

1. The new KEK is persisted first: FILE sources write ``<kek_file>.next``
   (0600, fsynced); ENV/CREDENTIAL sources write ``--new-key-file``;
   PASSPHRASE sources store a new scrypt salt (``scrypt_salt_next``).
2. ``rotation_target = new id`` is committed.
3. Subjects are re-wrapped in small transactions. Each row records the id of
   the KEK that wrapped it, so after a kill every subject is readable with the
   old or the new KEK, and the running device (which also holds ``.next``)
   keeps working.
4. One final transaction re-wraps any stragglers (enrolments that raced the
   loop), then switches ``active_kek_id`` and clears the target.
5. FILE sources atomically rename ``.next`` over the key file.

A rerun detects every intermediate state and finishes the job.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import structlog

from ..runtime.clock import Clock, SystemClock
from . import audit
from .crypto import AuthenticationFailed, kek_id, new_key, unwrap_dek, wrap_dek
from .db import Database, Publish, Tx
from .errors import KekSourceError, KeyUnavailableError, RotationError, TamperError
from .kek import (
    KekSource,
    KekSourceKind,
    derive_from_passphrase,
    fsync_dir,
    read_key_file,
    write_key_file,
)
from .keys import ACTIVE, SALT, SALT_NEXT, TARGET, WRAPS, KeyRing, get_meta, set_meta
from .store import Store

_log = structlog.get_logger("facegate.storage")
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class RotationReport:
    old_kek_id: str
    new_kek_id: str
    rewrapped: int
    total: int


async def init_kek(
    db_path: Path,
    source: KekSource,
    *,
    key_out: Path | None = None,
    clock: Clock | None = None,
    actor: str = "cli",
) -> str:
    """Create the device KEK, register its check value; returns the KEK id.

    Refuses a database that already has a KEK. FILE sources write the key
    file; ENV/CREDENTIAL sources write ``key_out`` for the operator to install.
    """
    clock = clock or SystemClock()
    async with Database(db_path, clock=clock) as db:
        if await get_meta(db, ACTIVE) is not None:
            raise RotationError(f"{db_path} already has a KEK; use 'facegate keys rotate'")
        if source.kind is KekSourceKind.PASSPHRASE:
            salt = os.urandom(16)
            kek = await asyncio.to_thread(derive_from_passphrase, source.passphrase, salt, source.scrypt_n)
        else:
            kek = new_key()
            salt = b""
            out = source.file if source.kind is KekSourceKind.FILE else key_out
            if out is None:
                raise KekSourceError(f"{source.describe()}: give --out FILE to write the new key to")
            await asyncio.to_thread(write_key_file, out, kek)
        kid = kek_id(kek)
        async with db.transaction() as tx:
            await set_meta(tx, ACTIVE, kid)
            await set_meta(tx, WRAPS, "0")
            if salt:
                await set_meta(tx, SALT, salt.hex())
            await audit.append(
                tx,
                actor=actor,
                action=audit.AuditAction.KEY_INIT,
                detail={"kek_id": kid[:8], "source": source.kind.value},
            )
    return kid


async def _next_key(
    store: Store,
    source: KekSource,
    target: str | None,
    new_key_file: Path | None,
    new_passphrase: str | None,
) -> bytes:
    if source.kind is KekSourceKind.PASSPHRASE:
        if not new_passphrase:
            raise RotationError("rotating a passphrase KEK needs the new passphrase")
        async with store.transaction() as tx:
            salt_hex = await get_meta(tx, SALT_NEXT) or os.urandom(16).hex()
            await set_meta(tx, SALT_NEXT, salt_hex)
        return await asyncio.to_thread(
            derive_from_passphrase, new_passphrase, bytes.fromhex(salt_hex), source.scrypt_n
        )
    path = source.next_file if source.kind is KekSourceKind.FILE else new_key_file
    if path is None:
        raise RotationError(f"{source.describe()}: give --new-key-file for the new KEK")
    if await asyncio.to_thread(path.exists):
        return await asyncio.to_thread(read_key_file, path, f"key file {path}")
    if target is not None:
        raise RotationError(f"rotation to KEK {target[:8]} is pending but {path} is missing")
    kek = new_key()
    await asyncio.to_thread(write_key_file, path, kek)
    return kek


async def _rewrap(tx: Tx, ring: KeyRing, new_id: str, limit: int) -> int:
    rows = await tx.fetchall(
        "SELECT subject_id, kek_id, wrapped, uses FROM vault.subject_keys WHERE kek_id != ? LIMIT ?",
        (new_id, limit),
    )
    new = ring.get(new_id)
    assert new is not None
    for sid, kid, wrapped, _uses in rows:
        raw = dek_bytes(ring, str(sid), str(kid), bytes(wrapped))
        await tx.execute(
            "UPDATE vault.subject_keys SET kek_id = ?, wrapped = ? WHERE subject_id = ?",
            (new_id, wrap_dek(new, new_id, str(sid), raw), sid),
        )
    return len(rows)


def dek_bytes(ring: KeyRing, sid: str, kid: str, wrapped: bytes) -> bytes:
    """The raw DEK (only to re-wrap it). KeyUnavailableError / TamperError."""
    kek = ring.get(kid)
    if kek is None:
        raise KeyUnavailableError(f"subject {sid}: wrapped under KEK {kid[:8]}, not held")
    try:
        return unwrap_dek(kek, kid, sid, wrapped)
    except AuthenticationFailed:
        raise TamperError(f"subject {sid}: wrapped data key failed authentication", subject_id=sid) from None


ExtraRewrap = Callable[[Tx, KeyRing, str], Awaitable[int]]
"""Re-wrap more KEK-wrapped secrets inside the rotation's final transaction."""


async def rotate_kek(
    db_path: Path,
    source: KekSource,
    *,
    new_key_file: Path | None = None,
    new_passphrase: str | None = None,
    batch: int = 256,
    progress: Progress | None = None,
    clock: Clock | None = None,
    publish: Publish | None = None,
    actor: str = "cli",
    rewrap_extra: Sequence[ExtraRewrap] = (),
) -> RotationReport:
    """Re-wrap every DEK under a new KEK (see module doc). Safe to rerun after a crash.

    ``rewrap_extra`` re-wraps other KEK-wrapped secrets (the policy's device
    signing key, for one) inside the same final transaction that switches the
    active KEK, so no secret is ever left wrapped only under a retired key.
    """
    async with Store(db_path, source, clock=clock, publish=publish, register_kek=False) as store:
        ring = store.keys
        active = await get_meta(store.db, ACTIVE)
        target = await get_meta(store.db, TARGET)
        assert active is not None
        new = await _next_key(store, source, target, new_key_file, new_passphrase)
        new_id = ring.add(new)
        if target is not None and target != new_id:
            raise RotationError(f"a rotation to KEK {target[:8]} is pending; the new key is {new_id[:8]}")
        total_row = await store.db.fetchone("SELECT COUNT(*) FROM vault.subject_keys")
        total = int(total_row[0]) if total_row else 0
        done = 0
        if active != new_id:
            if target is None:
                async with store.transaction() as tx:
                    await set_meta(tx, TARGET, new_id)
                    await audit.append(
                        tx,
                        actor=actor,
                        action=audit.AuditAction.KEY_ROTATION,
                        detail={"phase": "start", "from": active[:8], "to": new_id[:8]},
                    )
            left = await store.db.fetchone(
                "SELECT COUNT(*) FROM vault.subject_keys WHERE kek_id != ?", (new_id,)
            )
            done = total - (int(left[0]) if left else 0)
            if progress:
                progress(done, total)
            while True:
                async with store.transaction() as tx:
                    n = await _rewrap(tx, ring, new_id, batch)
                if n == 0:
                    break
                done += n
                if progress:
                    progress(min(done, total), total)
            async with store.transaction() as tx:
                while await _rewrap(tx, ring, new_id, 1000):
                    pass
                for extra in rewrap_extra:
                    await extra(tx, ring, new_id)
                count = await tx.fetchone("SELECT COUNT(*) FROM vault.subject_keys")
                await set_meta(tx, ACTIVE, new_id)
                await set_meta(tx, TARGET, None)
                await set_meta(tx, "previous_kek_id", active)
                await set_meta(tx, WRAPS, str(int(count[0]) if count else 0))
                if source.kind is KekSourceKind.PASSPHRASE:
                    await set_meta(tx, SALT, await get_meta(tx, SALT_NEXT))
                    await set_meta(tx, SALT_NEXT, None)
                await audit.append(
                    tx,
                    actor=actor,
                    action=audit.AuditAction.KEY_ROTATION,
                    detail={"phase": "done", "from": active[:8], "to": new_id[:8], "subjects": total},
                )
        await store.checkpoint()
    if source.kind is KekSourceKind.FILE:
        assert source.file is not None and source.next_file is not None
        if await asyncio.to_thread(source.next_file.exists):
            await asyncio.to_thread(os.replace, source.next_file, source.file)
            await asyncio.to_thread(fsync_dir, source.file.parent)
    _log.info("storage.kek_rotated", key_source=source.describe(), subjects=total)
    return RotationReport(active, new_id, done, total)
