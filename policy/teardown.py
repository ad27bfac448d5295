"""Device teardown (``facegate destroy``): the "unregister and destroy" path.

Order, each step durable before the next:

1. recognition stops (the caller's ``stop_recognition``) and every subject is
   removed from the in-memory matcher;
2. crypto-shred: every wrapped DEK, the KEK check value, the scrypt salt and
   the device secrets are deleted from the key vault in one transaction, so
   no copy of the main database can be decrypted any more, even with the KEK;
3. the data goes: templates, subjects, consents, age records, snapshots and
   access events are deleted (``secure_delete`` zeroes the pages), one final
   ``teardown`` audit row and a TEARDOWN privacy receipt are written, the
   device is marked destroyed, the WAL is checkpointed and the file vacuumed;
4. the KEK itself is destroyed where the device owns it: a key file (and a
   rotation's ``.next`` file) is overwritten and unlinked. Environment and
   systemd-credential KEKs are outside the device's reach; the report says so.
"""

from __future__ import annotations

import asyncio
import inspect
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import structlog

from ..runtime.events import PrivacyKind
from ..storage import AuditAction, EventClass, KekSource, KekSourceKind
from ..storage.kek import fsync_dir
from ..storage.keys import shred_vault
from ..storage.outbox import delete_class
from . import receipts
from .core import DESTROYED_KEY, Policy

_log = structlog.get_logger("facegate.policy")


@dataclass(frozen=True)
class TeardownReport:
    subjects: int
    templates: int
    keys_shredded: int
    kek_destroyed: bool
    kek_note: str


def _shred_file(path: Path) -> bool:
    """Overwrite a small key file with random bytes, fsync, unlink. Blocking."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return False
    with path.open("r+b") as fh:
        fh.write(os.urandom(max(size, 64)))
        fh.flush()
        os.fsync(fh.fileno())
    path.unlink()
    fsync_dir(path.parent)
    return True


async def destroy(
    policy: Policy,
    *,
    actor: str,
    kek: KekSource | None = None,
    stop_recognition: Callable[[], Awaitable[None] | None] | None = None,
) -> TeardownReport:
    """Stop recognition, crypto-shred and delete every subject, leave a final audit row and event."""
    store = policy.store
    if stop_recognition is not None:
        result = stop_recognition()
        if inspect.isawaitable(result):
            await result
    async with policy.lock:
        ids = await store.gallery.subject_ids()
        for sid in ids:
            await policy.live.remove(sid)
        async with store.transaction() as tx:
            templates = await store.subjects.count_templates(tx)
            shredded = await shred_vault(tx)
        async with store.transaction() as tx:
            subjects = await store.subjects.delete_all(tx)
            consents = await store.consents.delete_all(tx)
            await store.ages.delete_all(tx)
            await store.snapshots.delete_all(tx)
            await delete_class(tx, EventClass.ACCESS)
            counts = {"subjects": subjects, "templates": templates, "keys": shredded, "consents": consents}
            await store.kv.set_in(tx, DESTROYED_KEY, str(tx.at))
            await store.audit(tx, actor=actor, action=AuditAction.TEARDOWN, detail=counts)
            await receipts.emit(store, tx, PrivacyKind.TEARDOWN, counts=counts, detail="device destroyed")
        await store.checkpoint()
        await store.vacuum()
        await store.checkpoint()
    destroyed, note = await _destroy_kek(kek)
    _log.warning("policy.device_destroyed", subjects=subjects, templates=templates, kek_destroyed=destroyed)
    return TeardownReport(subjects, templates, shredded, destroyed, note)


async def _destroy_kek(kek: KekSource | None) -> tuple[bool, str]:
    if kek is None:
        return False, "no KEK source given"
    if kek.kind is KekSourceKind.FILE and kek.file is not None:
        gone = await asyncio.to_thread(_shred_file, kek.file)
        if kek.next_file is not None:
            await asyncio.to_thread(_shred_file, kek.next_file)
        return gone, f"key file {kek.file} {'overwritten and deleted' if gone else 'was already absent'}"
    if kek.kind is KekSourceKind.PASSPHRASE:
        return True, "scrypt salt deleted: the passphrase no longer derives the KEK"
    return False, f"{kek.describe()} is outside the device: remove it from the host configuration"
