"""Legal hold: a law, a court or an authority requires data to be kept longer.

A hold covers one subject or (``subject_id`` None) the whole device, names a
reason (a case reference code, no free text) and an expiry. While a hold is
active:

* an erasure (request, withdrawal, retention sweep) keeps the data: the
  subject is made unmatchable, consents are withdrawn as asked, and the
  erasure is recorded as *deferred* (audited ``erasure_deferred``, an
  ``erasure`` receipt with ``detail = "deferred:legal_hold:<reason>"`` and
  ``counts.deferred = 1``);
* a device-wide hold also stops the sweeper deleting access events, consent
  records, age records, snapshots and audit rows.

When a hold is released (signed command / CLI) or lapses (the sweeper marks
it at its expiry), the pending erasures no longer held run. Setting,
releasing and lapsing are audited (``legal_hold``, ``legal_hold_release``,
``legal_hold_lapse``) and receipted (``legal_hold`` on ``event/privacy``).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import structlog

from ..runtime.errors import FacegateError
from ..runtime.events import PrivacyKind
from ..storage import Tx, rights_state, uuid7_str
from ..storage.rights_state import Hold
from . import receipts
from .collection import check_subject_id
from .errors import ConsentInputError, HoldNotFoundError

if TYPE_CHECKING:
    from .outcomes import ErasureOutcome
    from .view import PolicyView

_log = structlog.get_logger("facegate.policy")
_REASON = re.compile(r"^[A-Za-z0-9_.:/-]{1,64}$")
MAX_HOLD_DAYS = 10 * 365


def check_reason(reason: str) -> str:
    if not isinstance(reason, str) or not _REASON.match(reason):
        raise ConsentInputError("hold reason must be a case reference code: 1-64 of A-Z a-z 0-9 _ . : / -")
    return reason


async def is_held(policy: PolicyView, subject_id: str | None, *, tx: Tx | None = None) -> bool:
    """True if an active hold covers ``subject_id`` (None: a device-wide hold is active)."""
    now = tx.at if tx is not None else policy.clock.wall()
    return any(
        h.active(now) and (h.subject_id is None or h.subject_id == subject_id)
        for h in await rights_state.open_holds(tx if tx is not None else policy.store.db)
    )


async def set_hold(
    policy: PolicyView, subject_id: str | None, *, reason: str, expires_at: float, actor: str
) -> Hold:
    """Place a hold (audited, receipted). ``subject_id`` None holds the whole device."""
    if subject_id is not None:
        check_subject_id(subject_id, "subject id")
    check_reason(reason)
    async with policy.lock, policy.store.transaction() as tx:
        if not tx.at < expires_at <= tx.at + MAX_HOLD_DAYS * 86_400.0:
            raise ConsentInputError(f"hold expiry must be in the future and within {MAX_HOLD_DAYS} days")
        hold = await rights_state.add_hold(
            tx, uuid7_str(), subject_id, reason=reason, actor=actor, expires_at=expires_at
        )
        await policy.store.audit(
            tx,
            actor=actor,
            action="legal_hold",
            subject_id=subject_id,
            detail={
                "hold_id": hold.hold_id,
                "scope": _scope(hold),
                "reason": reason,
                "expires_at": expires_at,
            },
        )
        await receipts.emit(
            policy.store,
            tx,
            PrivacyKind.LEGAL_HOLD,
            subject_id=subject_id,
            receipt_id=hold.hold_id,
            detail=f"set:{_scope(hold)}",
        )
    return hold


def _scope(hold: Hold) -> str:
    return "device" if hold.subject_id is None else "subject"


async def release_hold(policy: PolicyView, hold_id: str, *, actor: str) -> int:
    """End a hold now (audited, receipted); returns how many pending erasures then ran."""
    async with policy.lock:
        async with policy.store.transaction() as tx:
            hold = await rights_state.get_hold(tx, hold_id)
            if hold is None or not await rights_state.end_hold(tx, hold_id, released=True):
                raise HoldNotFoundError(f"no open legal hold {hold_id}")
            await _ended(policy, tx, hold, actor=actor, action="legal_hold_release", how="released")
        return await run_pending(policy, actor=actor)


async def lapse_due(policy: PolicyView, tx: Tx) -> int:
    """Mark every hold past its expiry as lapsed (audited, receipted); caller holds the lock."""
    n = 0
    for hold in await rights_state.open_holds(tx):
        if hold.expires_at <= tx.at and await rights_state.end_hold(tx, hold.hold_id, released=False):
            await _ended(policy, tx, hold, actor="policy.retention", action="legal_hold_lapse", how="lapsed")
            n += 1
    return n


async def _ended(policy: PolicyView, tx: Tx, hold: Hold, *, actor: str, action: str, how: str) -> None:
    await policy.store.audit(
        tx, actor=actor, action=action, subject_id=hold.subject_id, detail={"hold_id": hold.hold_id}
    )
    await receipts.emit(
        policy.store,
        tx,
        PrivacyKind.LEGAL_HOLD,
        subject_id=hold.subject_id,
        receipt_id=uuid7_str(),
        detail=f"{how}:{hold.hold_id}",
    )


async def next_expiry(policy: PolicyView) -> float | None:
    holds = await rights_state.open_holds(policy.store.db)
    return min((h.expires_at for h in holds), default=None)


async def defer(
    policy: PolicyView, tx: Tx, subject_id: str, *, actor: str, reason: str, withdrawn: int
) -> bool:
    """Record a held erasure in ``tx``; False (nothing written) if one was already pending."""
    if not await rights_state.defer_erasure(tx, subject_id, reason=reason, actor=actor):
        return False
    await policy.store.audit(
        tx, actor=actor, action="erasure_deferred", subject_id=subject_id, detail={"reason": reason}
    )
    await receipts.emit(
        policy.store,
        tx,
        PrivacyKind.ERASURE,
        subject_id=subject_id,
        counts={"templates": 0, "deferred": 1, "consents_withdrawn": withdrawn},
        detail=f"deferred:legal_hold:{reason}",
    )
    return True


async def run_pending(policy: PolicyView, *, actor: str) -> int:
    """Run the deferred erasures no hold covers any more; caller holds :attr:`Policy.lock`."""
    done = 0
    for sid, reason in await rights_state.pending_erasures(policy.store.db):
        if await is_held(policy, sid):
            continue
        try:
            out: ErasureOutcome = await policy.erase_locked(sid, actor=actor, reason=reason)
        except FacegateError as exc:
            _log.error("policy.deferred_erase_failed", subject_id=sid, error=type(exc).__name__)
            continue
        done += int(not out.deferred)
    return done
