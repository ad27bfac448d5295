"""Issue 16: the start-up permission check is one set query, and agrees with the per-subject rule."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pytest
from facegate.handlers.recognition.matcher import Matcher
from facegate.policy import AgeBand, ConsentKind, ConsentMethod, ConsentState, Guardian, Policy
from facegate.policy.consent import ACCESS_CONTROL, today
from facegate.policy.errors import ConsentRequiredError
from facegate.policy.startup import unpermitted_subjects
from facegate.runtime.clock import ManualClock
from facegate.runtime.config.privacy import PrivacySection
from facegate.storage import KekSource, Store

from .conftest import DAY, EVIDENCE, MODEL, embeddings, matches

GUARD = Guardian(guardian_id="G-1", relationship="father", evidence_digest=EVIDENCE)


async def _grant(policy: Policy, sid: str, kind: ConsentKind, *, expires_at: float | None = None,
                 activate: bool = True, purpose: str = ACCESS_CONTROL) -> str:
    rec = await policy.consents.grant(
        subject_id=sid, kind=kind, method=ConsentMethod.PAPER, evidence_digest=EVIDENCE,
        actor="op", expires_at=expires_at, activate=activate, purpose=purpose,
        guardian=GUARD if kind is ConsentKind.GUARDIAN else None,
    )
    return rec.consent_id


async def _population(policy: Policy, clock: ManualClock) -> list[str]:
    """Every way a subject can be (not) permitted, enrolled without the policy's checks."""
    now = clock.wall()
    day = today(now)
    adult, child = date(1980, 3, 3), date(day.year - 10, 6, 6)
    m = policy.privacy.minor_age
    # The device is restarted two days later: one turns minor_age before, one after the restart.
    of_age_at_restart = date(day.year - m, day.month, day.day) + timedelta(days=1)
    minor_at_restart = date(day.year - m, day.month, day.day) + timedelta(days=5)
    cases: dict[str, tuple[date | None, AgeBand | None, list[ConsentKind]]] = {
        "ok-adult": (adult, None, [ConsentKind.BIOMETRIC]),
        "ok-band": (None, AgeBand.ADULT, [ConsentKind.BIOMETRIC]),
        "ok-child-guarded": (child, None, [ConsentKind.BIOMETRIC, ConsentKind.GUARDIAN]),
        "ok-band-guarded": (None, AgeBand.UNDER_14, [ConsentKind.BIOMETRIC, ConsentKind.GUARDIAN]),
        "ok-of-age-at-restart": (of_age_at_restart, None, [ConsentKind.BIOMETRIC]),
        "no-minor-at-restart": (minor_at_restart, None, [ConsentKind.BIOMETRIC]),
        "no-consent": (adult, None, []),
        "no-age": (None, None, [ConsentKind.BIOMETRIC]),
        "no-child": (child, None, [ConsentKind.BIOMETRIC]),
        ("no-band-14" if m > 14 else "ok-band-14"): (None, AgeBand.FROM_14_TO_17, [ConsentKind.BIOMETRIC]),
        "no-only-other": (adult, None, [ConsentKind.OTHER]),
    }
    x = embeddings(len(cases) + 4, seed=7)
    for i, (sid, (birth, band, kinds)) in enumerate(cases.items()):
        if birth is not None or band is not None:
            await policy.consents.record_age(sid, birth_date=birth, age_band=band, actor="op")
        for kind in kinds:
            await _grant(policy, sid, kind)
        await policy.store.gallery.enroll(sid, x[i], MODEL, actor="op")
    extra = len(cases)
    for sid in ("no-expired", "no-withdrawn", "no-pending", "no-other-purpose"):
        await policy.consents.record_age(sid, birth_date=adult, actor="op")
        if sid == "no-expired":
            await _grant(policy, sid, ConsentKind.BIOMETRIC, expires_at=now + DAY)
        elif sid == "no-withdrawn":
            cid = await _grant(policy, sid, ConsentKind.BIOMETRIC)
            await policy.consents.transition(cid, ConsentState.WITHDRAWN, actor="op", reason="t")
        elif sid == "no-pending":
            await _grant(policy, sid, ConsentKind.BIOMETRIC, activate=False)
        else:
            await _grant(policy, sid, ConsentKind.BIOMETRIC, purpose="payment")
        await policy.store.gallery.enroll(sid, x[extra], MODEL, actor="op")
        extra += 1
    return [*cases, "no-expired", "no-withdrawn", "no-pending", "no-other-purpose"]


@pytest.mark.asyncio
async def test_set_check_equals_the_per_subject_rule_and_open_purges_the_matcher(
    db_path: Path, kek: KekSource, clock: ManualClock
) -> None:
    async with Store(db_path, kek, clock=clock) as store:
        policy = await Policy(store, PrivacySection(), clock=clock).open()
        sids = await _population(policy, clock)
    clock.set_wall(clock.wall() + 2 * DAY)  # the device was off: one consent expired meanwhile
    async with Store(db_path, kek, clock=clock) as store:
        matcher = Matcher(MODEL, 128, threads=1)
        await store.gallery.load_all(matcher)
        assert matcher.subject_count == len(sids)
        policy = Policy(store, PrivacySection(), clock=clock, sink=matcher)
        await policy.open()
        expected = set()
        for sid in sids:
            try:
                await policy.consents.check_enrolment(sid, ACCESS_CONTROL)
            except ConsentRequiredError:
                expected.add(sid)
        assert expected == {s for s in sids if s.startswith("no-")}
        assert set(await unpermitted_subjects(store, PrivacySection(), ACCESS_CONTROL)) == expected
        for sid in sids:
            assert matcher.has_subject(sid) == (sid not in expected)
        assert matches(matcher, "ok-adult", embeddings(15, seed=7)[0])
