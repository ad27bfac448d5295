"""Right to erasure, the steps (GDPR Art. 17, PIPL Art. 47): unmatchable, shredded, deleted, audited.

:meth:`Policy.erase_subject <facegate.policy.core.Policy.erase_subject>` takes the policy lock
and calls :func:`erase_locked` (the retention sweeper and the legal-hold release call it with
the lock already held). The subject leaves the matcher first; then consents are withdrawn as
asked; a legal hold defers the rest (:mod:`.holds`); otherwise the gallery removes the
templates and, in the same transaction, scrubs the outbox, deletes the age record, rights
state and snapshots, and writes the ``erasure`` receipt.
"""

from __future__ import annotations

import structlog

from ..runtime.events import PrivacyKind
from ..storage import ErasureReceipt, Tx, rights_state, uuid7_str
from ..storage.errors import SubjectNotFoundError
from ..storage.scrub import scrub_subject
from . import holds, receipts
from .consent_model import ConsentState
from .errors import SubjectUnknownError
from .outcomes import ErasureOutcome
from .view import PolicyView

_log = structlog.get_logger("facegate.policy")


async def erase_locked(
    policy: PolicyView,
    subject_id: str,
    *,
    actor: str,
    reason: str,
    purpose: str | None = None,
    withdraw: bool = False,
) -> ErasureOutcome:
    """Erase ``subject_id`` with ``policy.lock`` held by the caller; see the module doc."""
    t0 = policy.clock.monotonic()
    await policy.live.remove(subject_id)
    t_unmatchable = policy.clock.monotonic() - t0
    withdrawn = 0
    if withdraw:
        async with policy.store.transaction() as tx:
            for rec in await policy.consents.for_subject(subject_id, tx=tx):
                live = rec.state in {ConsentState.PENDING, ConsentState.ACTIVE}
                if live and (purpose is None or rec.purpose == purpose):
                    await policy.consents.transition(
                        rec.consent_id, ConsentState.WITHDRAWN, actor=actor, reason=reason, tx=tx
                    )
                    withdrawn += 1
    if await policy.is_enrolled(subject_id) or await policy.consents.age(subject_id) is not None:
        async with policy.store.transaction() as tx:
            if await holds.is_held(policy, subject_id, tx=tx):
                await holds.defer(policy, tx, subject_id, actor=actor, reason=reason, withdrawn=withdrawn)
                total = policy.clock.monotonic() - t0
                return ErasureOutcome(subject_id, None, withdrawn, t_unmatchable, total, deferred=True)

    async def in_tx(tx: Tx, receipt: ErasureReceipt) -> None:
        await scrub_subject(tx, subject_id)  # before the receipt: that one must name it
        await policy.store.ages.delete(tx, subject_id)
        await rights_state.forget_subject(tx, subject_id)
        snaps = await policy.store.snapshots.delete_for_subject(tx, subject_id)
        await receipts.emit(
            policy.store,
            tx,
            PrivacyKind.ERASURE,
            subject_id=subject_id,
            counts={"templates": receipt.templates, "snapshots": snaps, "consents_withdrawn": withdrawn},
            receipt_id=receipt.receipt_id,
            detail=reason,
        )

    receipt: ErasureReceipt | None = None
    try:
        receipt = await policy.store.gallery.remove(
            subject_id, actor=actor, reason=reason, in_tx=in_tx, unmatched=True
        )
    except SubjectNotFoundError:
        age = await policy.consents.age(subject_id)
        if age is None and not withdrawn:
            raise SubjectUnknownError(f"subject {subject_id} is not known to this device") from None
        async with policy.store.transaction() as tx:
            await policy.store.audit(
                tx,
                actor=actor,
                action="erase",
                subject_id=subject_id,
                detail={"templates": 0, "reason": reason},
            )
            await in_tx(tx, ErasureReceipt(uuid7_str(), subject_id, 0, tx.at))
    total = policy.clock.monotonic() - t0
    _log.info(
        "policy.erased",
        subject_id=subject_id,
        reason=reason,
        unmatchable_ms=round(t_unmatchable * 1e3, 3),
    )
    return ErasureOutcome(subject_id, receipt, withdrawn, t_unmatchable, total)
