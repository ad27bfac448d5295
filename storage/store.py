"""The storage facade: one open database with its key ring, gallery, outbox, audit and state.

Usage::

    async with Store(path, kek_source, clock=clock, publish=bus.publish) as store:
        await store.gallery.load_all(matcher)
        async with store.transaction() as tx:          # one atomic change:
            ...                                         # policy's own rows
            await store.outbox.append_in(tx, topic, payload, klass=EventClass.PRIVACY)
            await store.audit(tx, actor="op", action=AuditAction.CONSENT_CHANGE, subject_id=sid)

Opening checks integrity, migrates, and verifies the KEK (WrongKekError names
the source and writes nothing).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Literal

from ..runtime.clock import Clock, SystemClock
from ..runtime.events import SecurityEvent, SecurityKind
from . import audit as _audit
from .audit import AuditRecord, AuditTail, AuditVerification, Scalar, verify_chain
from .command_results import CommandResults
from .consents import Ages, Consents
from .db import Database, Publish, Tx
from .gallery import Gallery
from .kek import KekSource, KekSourceKind
from .keys import KeyRing
from .outbox import Outbox
from .snapshots import Snapshots
from .subjects import SubjectRecords

if TYPE_CHECKING:
    from ..runtime.config.storage import StorageSection


class KvState:
    """Small key-value state (licence clock high-water mark and the like)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def get(self, key: str) -> str | None:
        row = await self.db.fetchone("SELECT value FROM kv_state WHERE key = ?", (key,))
        return None if row is None else str(row[0])

    async def set(self, key: str, value: str, *, tx: Tx | None = None) -> None:
        if tx is not None:
            await self.set_in(tx, key, value)
            return
        async with self.db.transaction() as t:
            await self.set_in(t, key, value)

    @staticmethod
    async def set_in(tx: Tx, key: str, value: str) -> None:
        await tx.execute(
            "INSERT INTO kv_state(key, value, updated_at) VALUES (?, ?, ?) ON CONFLICT(key) "
            "DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
            (key, value, tx.at),
        )

    async def delete(self, key: str) -> None:
        async with self.db.transaction() as tx:
            await tx.execute("DELETE FROM kv_state WHERE key = ?", (key,))


def kek_source_from_config(section: StorageSection) -> KekSource:
    """Build the KEK source the config names."""
    kind = KekSourceKind(section.kek_source)
    return KekSource(
        kind=kind,
        file=section.kek_file,
        credential=section.kek_credential,
        env=section.kek_env,
        passphrase=section.passphrase.reveal() if section.passphrase is not None else "",
    )


class Store:
    """An open facegate store. Use as an async context manager."""

    def __init__(
        self,
        path: Path | str,
        kek: KekSource,
        *,
        clock: Clock | None = None,
        publish: Publish | None = None,
        vault_path: Path | str | None = None,
        busy_timeout_ms: int = 5000,
        integrity: Literal["quick", "full", "off"] = "quick",
        repair: bool = False,
        outbox_max_pending: int = 100_000,
        max_templates_per_subject: int = 20,
        register_kek: bool = True,
    ) -> None:
        self.clock: Clock = clock or SystemClock()
        self.db = Database(
            path,
            vault_path=vault_path,
            busy_timeout_ms=busy_timeout_ms,
            integrity=integrity,
            repair=repair,
            clock=self.clock,
            publish=publish,
        )
        self.keys = KeyRing(self.db, kek)
        self.gallery = Gallery(
            self.db,
            self.keys,
            clock=self.clock,
            max_templates_per_subject=max_templates_per_subject,
        )
        self.outbox = Outbox(self.db, max_pending=outbox_max_pending, clock=self.clock)
        self.kv = KvState(self.db)
        # The privacy policy's records: storage owns the tables, keys and seals.
        self.subjects = SubjectRecords(self.db, self.keys)
        self.consents = Consents(self.db)
        self.ages = Ages(self.db)
        self.snapshots = Snapshots(self.db)
        self.audit_tail = AuditTail(self.db)
        self.command_results = CommandResults(self.db)
        self._register = register_kek

    @classmethod
    def from_config(
        cls,
        section: StorageSection,
        *,
        clock: Clock | None = None,
        publish: Publish | None = None,
        repair: bool = False,
        register_kek: bool = True,
    ) -> Store:
        return cls(
            section.path,
            kek_source_from_config(section),
            clock=clock,
            publish=publish,
            vault_path=section.vault_path,
            busy_timeout_ms=section.busy_timeout_ms,
            integrity=section.integrity_check,
            repair=repair,
            outbox_max_pending=section.outbox_max_pending,
            max_templates_per_subject=section.max_templates_per_subject,
            register_kek=register_kek,
        )

    async def __aenter__(self) -> Store:
        await self.db.open()
        try:
            await self.keys.open(register=self._register)
            await self.reconcile()
            await self.outbox.open()
        except BaseException:
            await self.db.close()
            raise
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.db.close()

    def transaction(self, *, durable: bool = True) -> AbstractAsyncContextManager[Tx]:
        """An atomic write: state change + outbox event + audit row commit together."""
        return self.db.transaction(durable=durable)

    @staticmethod
    async def audit(
        tx: Tx,
        *,
        actor: str,
        action: str,
        subject_id: str | None = None,
        detail: Mapping[str, Scalar] | None = None,
    ) -> AuditRecord:
        """Append an audit row inside ``tx``."""
        return await _audit.append(tx, actor=actor, action=action, subject_id=subject_id, detail=detail)

    async def verify_audit(self) -> AuditVerification:
        return await asyncio.to_thread(verify_chain, self.db.path)

    async def reconcile(self, *, orphan_age_s: float = 60.0) -> tuple[int, int]:
        """Repair the two-file invariants after a crash; returns (keys shredded, quarantined).

        * A vault key with no subject (an erasure killed between its two commits,
          older than ``orphan_age_s`` so in-flight enrolments are left alone) is
          deleted: the erasure completes.
        * Templates whose subject has no key can never decrypt: they are
          quarantined (kept) and reported as a security event, never dropped.
        """
        async with self.db.transaction() as tx:
            shredded = await tx.execute(
                "DELETE FROM vault.subject_keys WHERE created_at < ? AND subject_id NOT IN "
                "(SELECT subject_id FROM main.subjects)",
                (tx.at - orphan_age_s,),
            )
            keyless = await tx.execute(
                "UPDATE templates SET quarantined_at = ?, quarantine_reason = 'key_missing' "
                "WHERE quarantined_at IS NULL AND subject_id NOT IN "
                "(SELECT subject_id FROM vault.subject_keys)",
                (tx.at,),
            )
            if shredded:
                await _audit.append(
                    tx,
                    actor="storage",
                    action=_audit.AuditAction.ERASE,
                    detail={"orphan_keys_shredded": shredded},
                )
            if keyless:
                await _audit.append(
                    tx,
                    actor="storage",
                    action=_audit.AuditAction.QUARANTINE,
                    detail={"templates": keyless, "reason": "key_missing"},
                )
                tx.publish_after_commit(
                    SecurityEvent(
                        at=tx.at,
                        kind=SecurityKind.DECRYPT_FAILURE,
                        source="storage",
                        detail=f"{keyless} template(s) have no data key in the vault; quarantined",
                    )
                )
        if shredded:
            await self.db.checkpoint()
        return shredded, keyless

    async def checkpoint(self) -> None:
        await self.db.checkpoint()

    async def vacuum(self) -> None:
        """Rewrite the main file without free pages (after teardown: no deleted bytes remain).

        Runs under the database lock: no transaction may be open.
        """
        await self.db.fetchall("VACUUM")
