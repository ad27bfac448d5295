"""The encrypted gallery: subjects, their templates, enrolment, erasure and loading.

Contract
--------
* :meth:`Gallery.enroll` encrypts each embedding under the subject's DEK
  (created on first enrolment) with AAD = subject id + template id + model id,
  writes the rows and an audit row in one durable transaction, and only then
  returns (and adds the templates to an attached matcher).
* :meth:`Gallery.remove` detaches the subject from the attached matcher
  first (unmatchable before anything else), then in one durable transaction
  destroys the wrapped DEK (crypto-shredding: every copy of its ciphertexts
  becomes unreadable), deletes templates and subject row (zeroed by
  ``secure_delete``), writes the audit row, runs the caller's ``in_tx`` hook
  (consent state, outbox receipt), and finally checkpoints the WAL.
* :meth:`Gallery.load_all` decrypts the whole gallery off the event loop in
  batches into a :class:`TemplateSink`. A template that fails authentication
  is quarantined (kept, excluded from loading) and reported as a
  :class:`SecurityEvent`; the rest load. Decrypted embeddings exist only in memory.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import structlog

from ..runtime.clock import Clock
from ..runtime.events import SecurityEvent, SecurityKind
from . import audit, image_sources
from .crypto import AuthenticationFailed, open_sealed, subject_aad, template_aad
from .db import Database, Tx
from .enrolment import EnrolResult, as_embeddings, check_id, create_missing_keys, enrol_batch
from .errors import InvalidInputError, KeyUnavailableError, SubjectNotFoundError, TamperError
from .keys import KeyRing
from .live_matcher import LiveMatcher
from .loader import LOAD_BATCH, LoadReport, TemplateSink, load_gallery
from .passages import forget_passages
from .subjects import seal_attributes
from .uuid7 import uuid7_str

_log = structlog.get_logger("facegate.storage")
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$")
Embeddings = npt.NDArray[np.float32]
AttrValue = str | int | float | bool | None


@dataclass(frozen=True)
class TemplateInfo:
    template_id: str
    model_id: str
    created_at: float
    quarantined: bool


@dataclass(frozen=True)
class SubjectRecord:
    """A decrypted subject (memory only). ``embeddings`` only when requested."""

    subject_id: str
    display_name: str | None
    attributes: Mapping[str, AttrValue]
    created_at: float
    updated_at: float
    last_match_at: float | None
    templates: tuple[TemplateInfo, ...]
    embeddings: Embeddings | None = None


@dataclass(frozen=True)
class ErasureReceipt:
    """What an erasure removed: ids and counts only."""

    receipt_id: str
    subject_id: str
    templates: int
    at: float


class Gallery:
    """Encrypted templates of one database. Attach the live matcher with :meth:`attach`."""

    def __init__(
        self,
        db: Database,
        keys: KeyRing,
        *,
        clock: Clock,
        max_templates_per_subject: int = 20,
    ) -> None:
        self.db = db
        self.keys = keys
        self.clock = clock
        self.max_templates_per_subject = max_templates_per_subject
        self.live = LiveMatcher()
        """The single writer of the attached matcher."""

    def attach(self, sink: TemplateSink | None) -> None:
        """Keep ``sink`` in step with enrolments and erasures from now on."""
        self.live.attach(sink)

    async def prepare_subject(self, subject_id: str) -> None:
        """Create the subject's DEK in the vault in its own durable transaction, if absent.

        Done before the enrolment transaction so the key always commits first: a
        crash between the two leaves a harmless orphan key (shredded by
        :meth:`Store.reconcile`), never templates without a key.
        """
        check_id(subject_id, "subject id")
        async with self.db.transaction() as tx:
            await create_missing_keys(tx, self.keys, [subject_id])

    async def enroll_in(
        self,
        tx: Tx,
        subject_id: str,
        embeddings: Any,
        model_id: str,
        *,
        actor: str,
        consent_ref: str | None = None,
        sources: Sequence[bytes] | None = None,
    ) -> tuple[EnrolResult, Embeddings]:
        """Enrol inside the caller's transaction (the matcher is not touched).

        Call :meth:`prepare_subject` before opening ``tx`` so the key commits first;
        otherwise the key is created in ``tx`` (two files, one commit).
        ``sources``: the keyed digest of each embedding's image (``image_sources.py``):
        an image this subject is already enrolled from is left out (counted in
        ``already_enrolled``; nothing written when none is left), one that enrols
        another subject raises ImageEnrolsAnotherSubjectError (nothing written).
        """
        items = self._validate([(subject_id, embeddings)], model_id)
        arr = items[0][1]
        skipped = 0
        by_subject: dict[str, Sequence[bytes | None]] | None = None
        if sources is not None:
            if len(sources) != len(arr):
                raise InvalidInputError(f"{len(sources)} image digests for {len(arr)} embeddings")
            keep = await image_sources.new_indices(tx, subject_id, sources)
            skipped = len(arr) - len(keep)
            if not keep:
                return EnrolResult(subject_id, (), False, skipped), arr[:0]
            arr = np.ascontiguousarray(arr[keep])
            by_subject = {subject_id: [sources[i] for i in keep]}
        (result,) = await enrol_batch(
            tx,
            self.keys,
            [(subject_id, arr)],
            model_id,
            actor=actor,
            consent_ref=consent_ref,
            max_per_subject=self.max_templates_per_subject,
            sources=by_subject,
        )
        if skipped:
            result = EnrolResult(result.subject_id, result.template_ids, result.created_subject, skipped)
        return result, arr

    def _validate(self, items: Sequence[tuple[str, Any]], model_id: str) -> list[tuple[str, Embeddings]]:
        check_id(model_id, "model id")
        return [(check_id(s, "subject id"), as_embeddings(e)) for s, e in items]

    async def enroll(
        self,
        subject_id: str,
        embeddings: Any,
        model_id: str,
        *,
        actor: str = "system",
        consent_ref: str | None = None,
    ) -> EnrolResult:
        """Encrypt and store ``embeddings`` (shape (n, d) or (d,)) for ``subject_id``.

        Durable when it returns. Raises InvalidInputError for bad ids/arrays
        (nothing written).
        """
        self._validate([(subject_id, embeddings)], model_id)  # nothing is written for bad input
        await self.prepare_subject(subject_id)
        async with self.db.transaction() as tx:
            result, arr = await self.enroll_in(
                tx, subject_id, embeddings, model_id, actor=actor, consent_ref=consent_ref
            )
        await self.live.add(subject_id, result.template_ids, arr, model_id)
        return result

    async def enroll_many(
        self,
        items: Sequence[tuple[str, Any]],
        model_id: str,
        *,
        actor: str = "system",
        consent_ref: str | None = None,
    ) -> list[EnrolResult]:
        """Bulk enrolment: every (subject id, embeddings) pair in one durable transaction."""
        valid = self._validate(items, model_id)
        async with self.db.transaction() as tx:  # keys commit first (see prepare_subject)
            await create_missing_keys(tx, self.keys, [s for s, _ in valid])
        async with self.db.transaction() as tx:
            results = await enrol_batch(
                tx,
                self.keys,
                valid,
                model_id,
                actor=actor,
                consent_ref=consent_ref,
                max_per_subject=self.max_templates_per_subject,
            )
        for res, (_, arr) in zip(results, valid, strict=True):
            await self.live.add(res.subject_id, res.template_ids, arr, model_id)
        return results

    async def remove(
        self,
        subject_id: str,
        *,
        actor: str = "system",
        reason: str = "erasure",
        in_tx: Callable[[Tx, ErasureReceipt], Awaitable[None]] | None = None,
        unmatched: bool = False,
    ) -> ErasureReceipt:
        """Erase a subject: unmatchable, crypto-shredded, deleted, audited, checkpointed.

        ``unmatched``: the caller already made it unmatchable through :attr:`live`.
        """
        check_id(subject_id, "subject id")
        if not unmatched:
            await self.live.remove(subject_id)
        async with self.db.transaction() as tx:
            if await tx.fetchone("SELECT 1 FROM subjects WHERE subject_id = ?", (subject_id,)) is None:
                raise SubjectNotFoundError(f"no subject {subject_id}")
            n = await tx.execute("DELETE FROM templates WHERE subject_id = ?", (subject_id,))
            await tx.execute("DELETE FROM subjects WHERE subject_id = ?", (subject_id,))
            await forget_passages(tx, subject_id)  # anti-passback state (storage/passages.py)
            receipt = ErasureReceipt(uuid7_str(), subject_id, n, tx.at)
            await audit.append(
                tx,
                actor=actor,
                action=audit.AuditAction.ERASE,
                subject_id=subject_id,
                detail={"templates": n, "reason": reason, "receipt_id": receipt.receipt_id},
            )
            if in_tx is not None:
                await in_tx(tx, receipt)
        # The main rows, audit and receipt are committed; now shred the key. A
        # crash in between leaves an orphan key that Store.reconcile() shreds.
        async with self.db.transaction() as tx:
            await tx.execute("DELETE FROM vault.subject_keys WHERE subject_id = ?", (subject_id,))
        await self.db.checkpoint()
        return receipt

    async def set_attributes(
        self,
        subject_id: str,
        *,
        display_name: str | None,
        attributes: Mapping[str, AttrValue] | None = None,
        actor: str = "system",
    ) -> None:
        """Replace the subject's encrypted display name and attributes (rectification)."""
        blob = json.dumps({"display_name": display_name, "attributes": dict(attributes or {})})
        async with self.db.transaction() as tx:
            if not await seal_attributes(tx, self.keys, subject_id, blob.encode()):
                raise SubjectNotFoundError(f"no subject {subject_id}")
            await audit.append(tx, actor=actor, action=audit.AuditAction.RECTIFY, subject_id=subject_id)

    async def get(self, subject_id: str, *, include_embeddings: bool = False) -> SubjectRecord:
        """A subject's decrypted record. SubjectNotFoundError / TamperError."""
        row = await self.db.fetchone(
            "SELECT created_at, updated_at, last_match_at, attrs FROM subjects WHERE subject_id = ?",
            (subject_id,),
        )
        if row is None:
            raise SubjectNotFoundError(f"no subject {subject_id}")
        dek = await self.keys.load_dek(self.db, subject_id)
        if dek is None:
            raise KeyUnavailableError(f"subject {subject_id}: no data key in the vault (erased?)")
        name: str | None = None
        attrs: dict[str, AttrValue] = {}
        if row[3] is not None:
            try:
                data = json.loads(open_sealed(dek.aead, bytes(row[3]), subject_aad(subject_id)))
            except AuthenticationFailed:
                raise TamperError(
                    f"subject {subject_id}: attributes failed authentication", subject_id=subject_id
                ) from None
            name, attrs = data["display_name"], data["attributes"]
        trows = await self.db.fetchall(
            "SELECT template_id, model_id, created_at, quarantined_at, ciphertext FROM templates "
            "WHERE subject_id = ? ORDER BY template_id",
            (subject_id,),
        )
        infos = tuple(TemplateInfo(str(t), str(m), float(c), q is not None) for t, m, c, q, _ in trows)
        emb: Embeddings | None = None
        if include_embeddings:
            vecs = []
            for t, m, _, q, ct in trows:
                if q is not None:
                    continue
                try:
                    pt = open_sealed(dek.aead, bytes(ct), template_aad(subject_id, str(t), str(m)))
                except AuthenticationFailed:
                    raise TamperError(
                        f"subject {subject_id}: template failed authentication",
                        subject_id=subject_id,
                        template_id=str(t),
                    ) from None
                vecs.append(np.frombuffer(pt, dtype=np.float32))
            emb = np.stack(vecs) if vecs else np.empty((0, 0), np.float32)
        return SubjectRecord(subject_id, name, attrs, float(row[0]), float(row[1]), row[2], infos, emb)

    async def count(self) -> int:
        """Loadable (not quarantined) templates."""
        row = await self.db.fetchone("SELECT COUNT(*) FROM templates WHERE quarantined_at IS NULL")
        return int(row[0]) if row else 0

    async def count_subjects(self) -> int:
        row = await self.db.fetchone("SELECT COUNT(*) FROM subjects")
        return int(row[0]) if row else 0

    async def subject_ids(self) -> list[str]:
        return [
            str(r[0]) for r in await self.db.fetchall("SELECT subject_id FROM subjects ORDER BY subject_id")
        ]

    async def record_match(self, subject_id: str) -> None:
        """Note a successful match (retention counts from the last one). Best-effort write."""
        async with self.db.transaction(durable=False) as tx:
            await tx.execute(
                "UPDATE subjects SET last_match_at = ? WHERE subject_id = ?", (tx.at, subject_id)
            )

    async def load_all(
        self, sink: TemplateSink, *, model_id: str | None = None, batch: int = LOAD_BATCH
    ) -> LoadReport:
        """Decrypt every loadable template into ``sink``; quarantine and report failures.

        With ``model_id`` only that model's templates are loaded (a matcher holds
        one model); the others are counted in ``LoadReport.other_models``.
        """
        report = await load_gallery(
            self.db.path,
            self.db.vault_path,
            self.keys,
            sink,
            batch=batch,
            clock=self.clock,
            model_id=model_id,
        )
        if report.failures:
            await self._quarantine(report)
        if report.unavailable:
            self.db.publish(
                SecurityEvent(
                    at=self.clock.wall(),
                    kind=SecurityKind.DECRYPT_FAILURE,
                    source="storage",
                    detail=f"{report.unavailable} template(s) wrapped under a KEK not held "
                    "(rotation unfinished?)",
                )
            )
        _log.info(
            "storage.gallery_loaded",
            template_count=report.templates,
            subjects=report.subjects,
            quarantined=len(report.failures),
            unavailable=report.unavailable,
            seconds=round(report.seconds, 3),
        )
        return report

    async def _quarantine(self, report: LoadReport) -> None:
        async with self.db.transaction() as tx:
            for f in report.failures:
                await tx.execute(
                    "UPDATE templates SET quarantined_at = ?, quarantine_reason = ? "
                    "WHERE subject_id = ? AND template_id = ?",
                    (tx.at, f.reason, f.subject_id, f.template_id),
                )
                await audit.append(
                    tx,
                    actor="storage",
                    action=audit.AuditAction.QUARANTINE,
                    subject_id=f.subject_id,
                    detail={"template_id": f.template_id, "reason": f.reason},
                )
                tx.publish_after_commit(
                    SecurityEvent(
                        at=tx.at,
                        kind=SecurityKind.DECRYPT_FAILURE
                        if f.reason == "key_missing"
                        else SecurityKind.TAMPER,
                        subject_id=f.subject_id,
                        source="storage",
                        detail=f"template {f.template_id} failed authentication ({f.reason}); quarantined",
                    )
                )
        _log.error("storage.templates_quarantined", count=len(report.failures))
