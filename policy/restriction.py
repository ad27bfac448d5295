"""Restriction of processing (GDPR Art. 18; the SDK's "restrict" right) and the matchability rule.

A restricted subject's data is kept, encrypted, but the subject is
unmatchable: it leaves the in-memory matcher *before* the restriction
commits (so before :func:`restrict` returns), is never reloaded while
restricted, and cannot be enrolled further. Storage, export and erasure
still work. Each change is audited (``restrict`` / ``unrestrict``) and
receipted (``restriction`` on ``event/privacy``).

:func:`why_unmatchable` is the one rule deciding whether an enrolled subject
may be in the matcher: permitted by consent (:meth:`ConsentRegistry.check_enrolment`),
not restricted, no erasure pending behind a legal hold, and not past the
re-consent grace period of a material notice change.
"""

from __future__ import annotations

import asyncio
import inspect
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog

from ..runtime.clock import utc_iso
from ..runtime.events import PrivacyKind
from ..storage import rights_state
from . import receipts, reconsent
from .collection import check_subject_id
from .consent import ACCESS_CONTROL
from .errors import ConsentRequiredError, SubjectRestrictedError, SubjectUnknownError

if TYPE_CHECKING:
    from .view import PolicyView

_log = structlog.get_logger("facegate.policy")


async def _maybe_await(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


async def why_unmatchable(policy: PolicyView, subject_id: str) -> str | None:
    """None if the subject may be matched, else the reason code."""
    try:
        await policy.consents.check_enrolment(subject_id, ACCESS_CONTROL)
    except ConsentRequiredError:
        return "no_consent"
    db = policy.store.db
    if await rights_state.restricted_at(db, subject_id) is not None:
        return "restricted"
    if await rights_state.erasure_pending(db, subject_id):
        return "erasure_deferred"
    if await reconsent.lapsed(policy, subject_id):
        return "reconsent_required"
    return None


async def refuse_unmatchable(policy: PolicyView, subject_id: str) -> None:
    """Enrolment refused for a restricted subject, a pending erasure, or an overdue re-consent."""
    why = await why_unmatchable(policy, subject_id)
    if why == "restricted":
        raise SubjectRestrictedError(f"subject {subject_id} restricted processing")
    if why == "erasure_deferred":
        raise SubjectRestrictedError(f"an erasure of {subject_id} is pending behind a legal hold")
    if why == "reconsent_required":
        raise ConsentRequiredError(
            subject_id, f"reconsent:{ACCESS_CONTROL}", "consent predates the current privacy notice"
        )


@dataclass(frozen=True)
class RestrictOutcome:
    """``changed`` False: it already was (un)restricted. ``unmatchable_s``: call start to matcher removal."""

    subject_id: str
    changed: bool
    receipt_id: str | None
    unmatchable_s: float


async def _known(policy: PolicyView, subject_id: str) -> None:
    check_subject_id(subject_id, "subject id")
    if await policy.is_enrolled(subject_id) or await policy.consents.for_subject(subject_id):
        return
    raise SubjectUnknownError(f"subject {subject_id} is not known to this device")


async def restrict(
    policy: PolicyView, subject_id: str, *, actor: str, reason: str = "request"
) -> RestrictOutcome:
    """Restrict processing: unmatchable before this returns; data kept; audited and receipted."""
    async with policy.lock:
        await _known(policy, subject_id)
        t0 = policy.clock.monotonic()
        await policy.live.remove(subject_id)
        t_unmatchable = policy.clock.monotonic() - t0
        try:
            async with policy.store.transaction() as tx:
                changed = await rights_state.restrict(tx, subject_id, actor=actor, reason=reason)
                receipt = None
                if changed:
                    await policy.store.audit(
                        tx, actor=actor, action="restrict", subject_id=subject_id, detail={"reason": reason}
                    )
                    event = await receipts.emit(
                        policy.store, tx, PrivacyKind.RESTRICTION, subject_id=subject_id, detail="restricted"
                    )
                    receipt = event.receipt_id
        except BaseException:
            # Nothing committed (or cancelled mid-commit): reload only if still matchable.
            await asyncio.shield(reload_if_matchable(policy, subject_id))
            raise
    _log.info("policy.restricted", subject_id=subject_id, unmatchable_ms=round(t_unmatchable * 1e3, 3))
    return RestrictOutcome(subject_id, changed, receipt, t_unmatchable)


async def unrestrict(policy: PolicyView, subject_id: str, *, actor: str) -> RestrictOutcome:
    """Lift a restriction; the subject is matchable again if otherwise permitted."""
    async with policy.lock:
        await _known(policy, subject_id)
        async with policy.store.transaction() as tx:
            changed = await rights_state.unrestrict(tx, subject_id)
            receipt = None
            if changed:
                await policy.store.audit(
                    tx, actor=actor, action="unrestrict", subject_id=subject_id, detail={}
                )
                event = await receipts.emit(
                    policy.store, tx, PrivacyKind.RESTRICTION, subject_id=subject_id, detail="unrestricted"
                )
                receipt = event.receipt_id
        if changed:
            await reload_if_matchable(policy, subject_id)
    return RestrictOutcome(subject_id, changed, receipt, 0.0)


async def reload_if_matchable(policy: PolicyView, subject_id: str) -> None:
    """Put an enrolled subject back into the matcher if the rule allows it."""
    if policy.sink is None or not await policy.is_enrolled(subject_id):
        return
    if await why_unmatchable(policy, subject_id) is None:
        await policy.reload(subject_id)


async def processing_state(policy: PolicyView, subject_id: str) -> dict[str, Any]:
    """What the export shows: restriction, legal holds, deferred erasure, matchability."""
    db = policy.store.db
    at = await rights_state.restricted_at(db, subject_id)
    now = policy.clock.wall()
    return {
        "restricted": at is not None,
        "restricted_at": None if at is None else utc_iso(at),
        "legal_holds": [
            {
                "hold_id": h.hold_id,
                "scope": "device" if h.subject_id is None else "subject",
                "reason": h.reason,
                "expires_at": utc_iso(h.expires_at),
                "active": h.active(now),
            }
            for h in await rights_state.holds_for(db, subject_id)
        ],
        "erasure_deferred": await rights_state.erasure_pending(db, subject_id),
        "unmatchable_reason": await why_unmatchable(policy, subject_id),
    }
