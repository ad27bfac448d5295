"""Re-consent on a material change of the privacy notice.

``privacy.notices."<v>".require_reconsent = true`` marks notice version
``<v>`` as a material change. When a :class:`~facegate.policy.Policy` opens
with that ``notice_version`` for the first time, the time it took effect is
recorded (``kv_state`` key ``policy.notice_effective.<v>``, audited, receipt
``reconsent`` on ``event/privacy``).

A subject is *stale* when none of its active biometric consents for
``access_control`` was given under ``<v>`` or after it took effect. A stale
subject stays matchable during ``grace_days``; after that it is unmatchable
(its data is kept, encrypted) until it consents again. :func:`status` lists
who must re-consent; each retention sweep publishes the counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..runtime.events import PrivacyKind
from ..storage.permits import stale_consent_subjects
from . import receipts
from .consent import ACCESS_CONTROL
from .consent_model import ConsentKind

if TYPE_CHECKING:
    from .view import PolicyView

_DAY = 86_400.0
_KEY = "policy.notice_effective."
_ACTOR = "policy.reconsent"


@dataclass(frozen=True)
class Reconsent:
    """Who must re-consent: in grace (still matchable) and lapsed (unmatchable)."""

    notice_version: str
    effective_at: float | None
    deadline: float | None
    pending: tuple[str, ...] = ()
    lapsed: tuple[str, ...] = ()


def required(policy: PolicyView) -> bool:
    """True if the current notice version is a material change."""
    rule = policy.privacy.notices.get(policy.privacy.notice_version)
    return rule is not None and rule.require_reconsent


async def note_notice(policy: PolicyView) -> None:
    """Record when a material notice version took effect (once; audited, receipted)."""
    if not required(policy):
        return
    version = policy.privacy.notice_version
    if await policy.store.kv.get(_KEY + version) is not None:
        return
    async with policy.store.transaction() as tx:
        await policy.store.kv.set_in(tx, _KEY + version, repr(tx.at))
        grace = policy.privacy.notices[version].grace_days
        await policy.store.audit(
            tx, actor=_ACTOR, action="notice_change", detail={"notice_version": version, "grace_days": grace}
        )
        await receipts.emit(
            policy.store, tx, PrivacyKind.RECONSENT, counts={"grace_days": grace}, detail=f"notice {version}"
        )


async def effective_at(policy: PolicyView) -> float | None:
    if not required(policy):
        return None
    raw = await policy.store.kv.get(_KEY + policy.privacy.notice_version)
    return None if raw is None else float(raw)


async def deadline(policy: PolicyView) -> float | None:
    """When stale consents stop permitting matching (None: no re-consent required)."""
    at = await effective_at(policy)
    if at is None:
        return None
    return at + policy.privacy.notices[policy.privacy.notice_version].grace_days * _DAY


async def is_stale(policy: PolicyView, subject_id: str, effective: float) -> bool:
    version = policy.privacy.notice_version
    now = policy.clock.wall()
    bio = [
        r
        for r in await policy.consents.for_subject(subject_id)
        if r.kind is ConsentKind.BIOMETRIC and r.purpose == ACCESS_CONTROL and r.is_active(now)
    ]
    return bool(bio) and not any(
        r.notice_version == version or (r.granted_at is not None and r.granted_at >= effective) for r in bio
    )


async def lapsed(policy: PolicyView, subject_id: str) -> bool:
    """True if the subject must re-consent and the grace period is over."""
    due = await deadline(policy)
    if due is None or policy.clock.wall() < due:
        return False
    at = await effective_at(policy)
    return at is not None and await is_stale(policy, subject_id, at)


async def status(policy: PolicyView) -> Reconsent:
    """Every enrolled subject that must re-consent, split by grace period."""
    version = policy.privacy.notice_version
    at, due = await effective_at(policy), await deadline(policy)
    if at is None or due is None:
        return Reconsent(version, None, None)
    # One set-based read (the start-up check calls this): not a round trip per subject.
    stale = await stale_consent_subjects(
        policy.store.db, purpose=ACCESS_CONTROL, now=policy.clock.wall(), notice_version=version,
        effective=at,
    )
    if policy.clock.wall() < due:
        return Reconsent(version, at, due, pending=tuple(sorted(stale)))
    return Reconsent(version, at, due, lapsed=tuple(sorted(stale)))
