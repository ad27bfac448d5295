"""The policy state machine's model: independent restatements of the rules from raw records.

Each function here answers what the policy *should* do from the stored records
(consents, age, notice state, audit rows), without calling the code that decides
it, so the machine (``stateful_machine.py``) can compare the two.
"""

from __future__ import annotations

from typing import Any

from facegate.policy import ConsentKind, ConsentState, Policy, reconsent
from facegate.policy.consent import today
from facegate.policy.consent_model import is_minor
from facegate.runtime.config.privacy import PrivacySection, RetentionSection
from facegate.storage.db import Database
from hypothesis.control import currently_in_test_context, event

DAY = 86_400.0


def note(what: str) -> None:
    """Hypothesis ``event`` when run by Hypothesis; nothing when a test drives the steps itself."""
    if currently_in_test_context():
        event(what)


async def expected_permitted(policy: Policy, now: float, sid: str) -> bool:
    """Active biometric consent, an age record, and a guardian's consent for a minor."""
    recs = [r for r in await policy.consents.for_subject(sid) if r.purpose == "access_control"]

    def live(r: Any) -> bool:
        return r.state is ConsentState.ACTIVE and (r.expires_at is None or now < r.expires_at)

    age = await policy.consents.age(sid)
    if age is None or not any(live(r) and r.kind is ConsentKind.BIOMETRIC for r in recs):
        return False
    minor = is_minor(birth=age.birth_date, band=age.age_band, today=today(now), minor_age=14)
    return not minor or any(live(r) and r.kind is ConsentKind.GUARDIAN for r in recs)


async def stale(policy: Policy, privacy: PrivacySection, now: float, sid: str) -> bool:
    """Past the re-consent deadline and every live biometric consent predates the notice."""
    due = await reconsent.deadline(policy)
    at = await reconsent.effective_at(policy)
    if due is None or at is None or now < due:
        return False
    bio = [
        r
        for r in await policy.consents.for_subject(sid)
        if r.kind is ConsentKind.BIOMETRIC and r.purpose == "access_control" and r.is_active(now)
    ]
    return bool(bio) and all(
        r.notice_version != privacy.notice_version and (r.granted_at or 0) < at for r in bio
    )


async def audit_seq(db: Database) -> int:
    row = await db.fetchone("SELECT COALESCE(MAX(seq), 0) FROM audit")
    return int(row[0]) if row else 0


class Restrictions:
    """The restrictions the model asked for, each ended by a later completed erasure.

    An erasure (by request, withdrawal, age correction, the sweeper or a released or
    lapsed hold) deletes the subject's restriction with the rest of its data
    (``policy/erasure.py``); the model learns of it from the ``erase`` audit row every
    completed erasure writes. A deferred erasure (legal hold) writes none: the
    restriction stays until the erasure runs.
    """

    def __init__(self) -> None:
        self._since: dict[str, int] = {}  # subject -> the last audit seq before its restriction

    def add(self, sid: str, seq: int) -> None:
        self._since.setdefault(sid, seq)

    def discard(self, sid: str) -> None:
        self._since.pop(sid, None)

    async def active(self, db: Database, sid: str) -> bool:
        """Restricted and not erased since. The machine asks for every subject after every
        step, so an ``erase`` row is seen long before the 3-year audit retention purges it."""
        if sid not in self._since:
            return False
        erased = await db.fetchone(
            "SELECT 1 FROM audit WHERE action = 'erase' AND subject_id = ? AND seq > ?",
            (sid, self._since[sid]),
        )
        if erased is None:
            return True
        del self._since[sid]
        note("restriction ended by an erasure")
        return False


async def assert_retention(db: Database, now: float, ret: RetentionSection) -> None:
    """After an unheld sweep at ``now`` nothing outlives its retention (R14-R16)."""
    assert await db.fetchone(
        "SELECT COUNT(*) FROM consents WHERE state = 'active' AND expires_at <= ?", (now,)
    ) == (0,)
    assert await db.fetchone(
        "SELECT COUNT(*) FROM subjects s WHERE MAX(COALESCE(last_match_at, 0), created_at) <= ? AND "
        "NOT EXISTS (SELECT 1 FROM templates t "
        "WHERE t.subject_id = s.subject_id AND t.created_at > ?)",
        (now - ret.template_idle_s, now - ret.template_idle_s),
    ) == (0,)
    assert await db.fetchone(
        "SELECT COUNT(*) FROM outbox WHERE klass = 'access' AND created_at < ?", (now - 90 * DAY,)
    ) == (0,)
    assert await db.fetchone(
        "SELECT COUNT(*) FROM outbox WHERE delivered_at IS NOT NULL AND delivered_at < ?",
        (now - 7 * DAY,),
    ) == (0,)
    assert await db.fetchone("SELECT COUNT(*) FROM audit WHERE at < ?", (now - 1095 * DAY,)) == (0,)
