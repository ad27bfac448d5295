"""The policy facade: the one entry point for enrolment, erasure and consent changes.

Every enrolment path (CLI, MQTT command, bulk import, enrol from an image
file) calls :meth:`Policy.enrol_subject` or :meth:`Policy.enrol_many`; they
check consent and then write through the storage gallery. Storage's own
``Gallery.enroll`` is an internal primitive: anything that reaches the
database without consent is erased by the retention sweeper.

Matcher coherence: the gallery's :class:`~facegate.storage.live_matcher.LiveMatcher`
is the single writer of the in-memory matcher; the policy decides when a
subject leaves or re-enters it. One asyncio lock serialises enrolment, erasure
and sweeps, so an erasure can never be overtaken by a concurrent enrolment's
matcher update. Erasure makes the subject unmatchable before anything else
(once: the gallery's removal is told so), so it is unmatchable before the
call returns. Policy holds no SQL and seals nothing: storage's repositories
(``store.consents``, ``store.ages``, ``store.subjects``, ``store.snapshots``, ...) do.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any

import structlog

from ..runtime.clock import Clock
from ..runtime.config.privacy import PrivacySection
from ..runtime.events import PrivacyKind
from ..storage import EnrolResult, Store, TemplateSink, Tx, rights_state
from ..storage.errors import SubjectNotFoundError
from . import erasure, receipts, reconsent
from .collection import AttrValue, check_attributes, check_display_name
from .consent import ACCESS_CONTROL, ConsentRegistry
from .consent_model import AgeBand, ConsentKind, ConsentRecord, ConsentState
from .errors import ConsentRequiredError, DeviceDestroyedError, SubjectRestrictedError, SubjectUnknownError
from .outcomes import EnrolItem, ErasureOutcome
from .restriction import refuse_unmatchable, why_unmatchable
from .startup import unpermitted_subjects

_log = structlog.get_logger("facegate.policy")
DESTROYED_KEY = "policy.destroyed_at"
__all__ = ["DESTROYED_KEY", "EnrolItem", "ErasureOutcome", "Policy"]  # the records live in .outcomes


class Policy:
    """Privacy rules over one open :class:`Store` (call :meth:`open` once after the store opened)."""

    def __init__(
        self,
        store: Store,
        privacy: PrivacySection,
        *,
        clock: Clock,
        sink: TemplateSink | None = None,
        device_id: str = "",
    ) -> None:
        self.store = store
        self.privacy = privacy
        self.clock = clock
        self.device_id = device_id
        self.consents = ConsentRegistry(store, privacy)
        self.lock = asyncio.Lock()
        self.live = store.gallery.live
        """The matcher's single writer (the gallery's): the policy decides, it writes."""
        self.attach(sink)

    @property
    def sink(self) -> TemplateSink | None:
        """The live matcher attached to the gallery (None: none)."""
        return self.live.sink

    def attach(self, sink: TemplateSink | None) -> None:
        """Keep ``sink`` (the live matcher) in step with enrolments and erasures."""
        self.store.gallery.attach(sink)

    async def open(self) -> Policy:
        """Create the policy tables if missing; refuse a torn-down device.

        With a sink attached (the matcher, already filled by ``Gallery.load_all``),
        every subject that is no longer permitted (consent expired or withdrawn
        while the device was off, no age record, unguarded minor) is removed from
        it before this returns: it must not match in the window before the
        retention sweeper's first sweep erases it.
        """
        if await self.store.kv.get(DESTROYED_KEY) is not None:
            raise DeviceDestroyedError("this device was destroyed; re-provision it before use")
        await reconsent.note_notice(self)
        if self.sink is not None:
            async with self.lock:
                # Set operations over the whole gallery, not a round trip per subject:
                # not permitted, restricted, erasure held, or re-consent overdue.
                doomed = set(await unpermitted_subjects(self.store, self.privacy, ACCESS_CONTROL))
                doomed.update(await rights_state.restricted_ids(self.store.db))
                doomed.update(sid for sid, _ in await rights_state.pending_erasures(self.store.db))
                doomed.update((await reconsent.status(self)).lapsed)
                await self.live.remove_many(sorted(doomed))
        return self

    # -- enrolment -----------------------------------------------------------
    async def require_enrolment_consent(self, subject_id: str, purpose: str = ACCESS_CONTROL) -> str:
        """Raise ConsentRequiredError (naming what is missing) unless enrolment is allowed."""
        return await self.consents.check_enrolment(subject_id, purpose)

    async def enrol_subject(
        self,
        subject_id: str,
        embeddings: Any,
        model_id: str,
        *,
        actor: str,
        purpose: str = ACCESS_CONTROL,
        display_name: str | None = None,
        attributes: Mapping[str, AttrValue] | None = None,
        birth_date: date | None = None,
        age_band: AgeBand | None = None,
    ) -> EnrolResult:
        """Check consent (and guardian consent for a minor), then store and load the templates.

        ``birth_date``/``age_band`` record age evidence first when given.
        Raises ConsentRequiredError, ConsentInputError or a storage
        InvalidInputError; nothing is written to the gallery then.
        """
        res = await self.enrol_many(
            [EnrolItem(subject_id, embeddings, display_name, attributes)],
            model_id,
            actor=actor,
            purpose=purpose,
            ages={subject_id: (birth_date, age_band)} if birth_date or age_band else None,
        )
        return res[0]

    async def enrol_many(
        self,
        items: Sequence[EnrolItem],
        model_id: str,
        *,
        actor: str,
        purpose: str = ACCESS_CONTROL,
        ages: Mapping[str, tuple[date | None, AgeBand | None]] | None = None,
    ) -> list[EnrolResult]:
        """Bulk import: every item is checked, then all are written in one transaction."""
        for item in items:
            check_display_name(item.display_name)
            check_attributes(item.attributes)
        gallery = self.store.gallery
        async with self.lock:
            for sid, (birth, band) in (ages or {}).items():
                await self.consents.record_age(sid, birth_date=birth, age_band=band, actor=actor)
            for item in items:  # fail fast, before any data key is created
                await self.consents.check_enrolment(item.subject_id, purpose)
                await refuse_unmatchable(self, item.subject_id)
            for item in items:
                await gallery.prepare_subject(item.subject_id)
            done: list[tuple[EnrolResult, Any]] = []
            async with self.store.transaction() as tx:
                for item in items:
                    # Re-checked inside the writing transaction: a withdrawal that
                    # committed meanwhile (e.g. from another process) wins.
                    consent_id = await self.consents.check_enrolment(item.subject_id, purpose, tx=tx)
                    done.append(
                        await gallery.enroll_in(
                            tx,
                            item.subject_id,
                            item.embeddings,
                            model_id,
                            actor=actor,
                            consent_ref=consent_id,
                            sources=item.sources,
                        )
                    )
                    if item.display_name is not None or item.attributes:
                        await self._seal_attrs(tx, item.subject_id, item.display_name, item.attributes)
            for res, arr in done:
                if res.template_ids:
                    await self.live.add(res.subject_id, res.template_ids, arr, model_id)
        _log.info("policy.enrolled", subjects=len(done), templates=sum(len(r.template_ids) for r, _ in done))
        return [r for r, _ in done]

    async def _seal_attrs(
        self, tx: Tx, subject_id: str, name: str | None, attributes: Mapping[str, AttrValue] | None
    ) -> None:
        blob = json.dumps({"display_name": name, "attributes": check_attributes(attributes)})
        if not await self.store.subjects.set_attributes(tx, subject_id, blob.encode()):
            raise SubjectUnknownError(f"subject {subject_id} is not enrolled")

    async def record_age(
        self,
        subject_id: str,
        *,
        actor: str,
        birth_date: date | None = None,
        age_band: AgeBand | None = None,
    ) -> ErasureOutcome | None:
        """Record or correct age evidence; a subject now found to be an unguarded minor is erased."""
        async with self.lock:
            await self.consents.record_age(subject_id, birth_date=birth_date, age_band=age_band, actor=actor)
            if not await self.is_enrolled(subject_id):
                return None
            try:
                await self.consents.check_enrolment(subject_id, ACCESS_CONTROL)
            except ConsentRequiredError:
                return await self.erase_locked(subject_id, actor=actor, reason="minor_without_guardian")
            return None

    # -- matching --------------------------------------------------------------
    async def record_match(self, subject_id: str, at: float) -> None:
        """Recognition calls this on a successful match; template retention counts from it."""
        async with self.store.transaction(durable=False) as tx:
            await self.store.subjects.record_match(tx, subject_id, at)

    async def is_enrolled(self, subject_id: str) -> bool:
        return await self.store.subjects.exists(subject_id)

    # -- rectification -----------------------------------------------------------
    async def rectify(
        self,
        subject_id: str,
        *,
        actor: str,
        display_name: str | None = None,
        clear_display_name: bool = False,
        set_attributes: Mapping[str, AttrValue] | None = None,
        remove_attributes: Sequence[str] = (),
    ) -> None:
        """Correct the display name and attributes (GDPR Art. 16); audited, receipt emitted."""
        check_display_name(display_name)
        check_attributes(set_attributes)
        async with self.lock:
            if await rights_state.restricted_at(self.store.db, subject_id) is not None:
                raise SubjectRestrictedError(f"subject {subject_id} restricted processing")
            try:
                rec = await self.store.gallery.get(subject_id)
            except SubjectNotFoundError:
                raise SubjectUnknownError(f"subject {subject_id} is not enrolled") from None
            name = (
                None
                if clear_display_name
                else (display_name if display_name is not None else rec.display_name)
            )
            attrs = {k: v for k, v in rec.attributes.items() if k not in set(remove_attributes)}
            attrs.update(set_attributes or {})
            async with self.store.transaction() as tx:
                await self._seal_attrs(tx, subject_id, name, attrs)
                await self.store.audit(
                    tx,
                    actor=actor,
                    action="rectify",
                    subject_id=subject_id,
                    detail={
                        "fields": len(set_attributes or {})
                        + len(remove_attributes)
                        + int(display_name is not None or clear_display_name)
                    },
                )
                await receipts.emit(self.store, tx, PrivacyKind.RECTIFICATION, subject_id=subject_id)

    # -- withdrawal and erasure ------------------------------------------------------
    async def withdraw_consent(
        self, consent_id: str, *, actor: str
    ) -> tuple[ConsentRecord, ErasureOutcome | None]:
        """Withdraw one consent; if the subject is no longer permitted, erase it before returning.

        The subject leaves the in-memory matcher *before* the withdrawal
        commits; if another active consent still permits it, it is reloaded.
        """
        async with self.lock:
            before = await self.consents.get(consent_id)
            sid = before.subject_id
            live = before.state in {ConsentState.PENDING, ConsentState.ACTIVE}
            detach = live and before.kind is not ConsentKind.OTHER and await self.is_enrolled(sid)
            if detach:
                await self.live.remove(sid)
            try:
                record = await self.consents.transition(
                    consent_id, ConsentState.WITHDRAWN, actor=actor, reason="withdrawn"
                )
            except BaseException:
                if detach:  # nothing changed (or cancelled): put the subject back if still permitted
                    await asyncio.shield(self._reload_if_permitted(sid, before.purpose))
                raise
            if not detach:
                return record, None
            try:
                await self.consents.check_enrolment(sid, record.purpose)
            except ConsentRequiredError:
                return record, await self.erase_locked(sid, actor=actor, reason="consent_withdrawn")
            await self.reload(sid)
            return record, None

    async def _reload_if_permitted(self, subject_id: str, purpose: str) -> None:
        # A cancellation can land while the (shielded) COMMIT runs: the withdrawal is then
        # durable although transition() raised. Read the committed state before reloading.
        try:
            await self.consents.check_enrolment(subject_id, purpose)
        except ConsentRequiredError:
            return  # stays unmatchable; the sweeper completes the erasure
        await self.reload(subject_id)

    async def reload(self, subject_id: str) -> None:
        """Put a still-permitted subject back into the matcher (decrypting its templates)."""
        if self.sink is None or await why_unmatchable(self, subject_id) is not None:
            return
        rec = await self.store.gallery.get(subject_id, include_embeddings=True)
        live = [t for t in rec.templates if not t.quarantined]
        if rec.embeddings is None or not live:
            return
        for model in sorted({t.model_id for t in live}):
            rows = [i for i, t in enumerate(live) if t.model_id == model]
            await self.live.add(subject_id, [live[i].template_id for i in rows], rec.embeddings[rows], model)

    async def withdraw_subject(
        self, subject_id: str, *, actor: str, purpose: str = ACCESS_CONTROL
    ) -> ErasureOutcome:
        """Withdraw every consent the subject gave for ``purpose`` and erase its data."""
        return await self.erase_subject(subject_id, actor=actor, reason="consent_withdrawn", purpose=purpose)

    async def erase_subject(
        self, subject_id: str, *, actor: str, reason: str = "erasure", purpose: str | None = None
    ) -> ErasureOutcome:
        """Right to erasure (GDPR Art. 17, PIPL Art. 47): unmatchable, shredded, deleted, audited.

        Pending and active consents (for ``purpose``, or all) are withdrawn;
        the consent records themselves are kept as evidence of lawful processing.
        """
        async with self.lock:
            return await self.erase_locked(
                subject_id, actor=actor, reason=reason, purpose=purpose, withdraw=True
            )

    async def erase_locked(
        self,
        subject_id: str,
        *,
        actor: str,
        reason: str,
        purpose: str | None = None,
        withdraw: bool = False,
    ) -> ErasureOutcome:
        """Erase with :attr:`lock` already held by the caller (the sweeper); see :mod:`.erasure`."""
        return await erasure.erase_locked(
            self, subject_id, actor=actor, reason=reason, purpose=purpose, withdraw=withdraw
        )
