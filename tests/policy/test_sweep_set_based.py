"""Whole-gallery policy checks in one read: the sweep's permission (with check_enrolment's
reasons), who must re-consent (with reconsent.is_stale's rule) and whose validity ended."""

from __future__ import annotations

import datetime as dt
from datetime import date

import pytest
from facegate.handlers.recognition.matcher import Matcher
from facegate.policy import ConsentKind, ConsentMethod, Policy, reconsent, sweep
from facegate.policy.consent import ACCESS_CONTROL
from facegate.policy.errors import ConsentRequiredError
from facegate.runtime.clock import ManualClock
from facegate.runtime.config.privacy import NoticePolicy, PrivacySection
from facegate.storage import Store

from .conftest import DAY, MODEL, consent_adult, embeddings, grant

#: check_enrolment's ``missing`` -> the sweep's ``erased_<reason>`` count.
REASON = {
    f"biometric:{ACCESS_CONTROL}": "no_active_consent",
    "age": "no_age_record",
    f"guardian:{ACCESS_CONTROL}": "minor_without_guardian",
}


@pytest.mark.asyncio
async def test_sweep_makes_no_per_subject_consent_check_and_erases_what_it_would_refuse(
    policy: Policy, matcher: Matcher, monkeypatch: pytest.MonkeyPatch
) -> None:
    await consent_adult(policy, "P1")
    await policy.enrol_subject("P1", embeddings(1, seed=1), MODEL, actor="op")
    await consent_adult(policy, "P2")
    await grant(policy, "P2", ConsentKind.BIOMETRIC, ConsentMethod.PAPER)  # two consents: still one row
    await policy.enrol_subject("P2", embeddings(1, seed=2), MODEL, actor="op")
    # Enrolled through storage's primitive (as after an old import), each missing one thing:
    await grant(policy, "A1", ConsentKind.BIOMETRIC, ConsentMethod.PAPER)  # no age record
    await policy.consents.record_age("K1", birth_date=date(2016, 1, 1), actor="op")  # a minor
    await grant(policy, "K1", ConsentKind.BIOMETRIC, ConsentMethod.PAPER)
    await policy.consents.record_age("N1", birth_date=date(1980, 1, 1), actor="op")  # no consent
    for i, sid in enumerate(("A1", "K1", "N1")):
        await policy.store.gallery.enroll(sid, embeddings(1, seed=10 + i), MODEL)
    expected: dict[str, str] = {}
    for sid in ("A1", "K1", "N1", "P1", "P2"):
        try:
            await policy.consents.check_enrolment(sid, ACCESS_CONTROL)
        except ConsentRequiredError as exc:
            expected[sid] = REASON[exc.missing]
    assert expected == {"A1": "no_age_record", "K1": "minor_without_guardian", "N1": "no_active_consent"}

    calls: list[str] = []

    async def per_subject(subject_id: str, purpose: str, **_: object) -> str:
        calls.append(subject_id)
        raise AssertionError("a per-subject round trip in the sweep")

    monkeypatch.setattr(policy.consents, "check_enrolment", per_subject)
    report = await sweep(policy)
    assert calls == []
    erased = {k.removeprefix("erased_"): v for k, v in report.counts.items() if k.startswith("erased_") and v}
    assert erased == {reason: 1 for reason in expected.values()}
    assert matcher.has_subject("P1") and matcher.has_subject("P2")
    assert not any(matcher.has_subject(s) for s in expected)
    rows = await policy.store.db.fetchall("SELECT subject_id, detail FROM audit WHERE action = 'erase'")
    assert {str(r[0]): next(v for v in expected.values() if v in str(r[1])) for r in rows} == expected


@pytest.mark.asyncio
async def test_reconsent_status_reads_the_whole_gallery_once_with_is_stale_rule(
    store: Store, clock: ManualClock, matcher: Matcher, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = await Policy(store, PrivacySection(notice_version="1"), clock=clock, sink=matcher).open()
    for i, sid in enumerate(("S1", "S2", "S3")):
        await consent_adult(old, sid)
        await old.enrol_subject(sid, embeddings(1, seed=30 + i), MODEL, actor="op")
    await consent_adult(old, "E1", expires_at=clock.wall() + 2 * DAY)  # expires: not active, not stale
    await old.enrol_subject("E1", embeddings(1, seed=40), MODEL, actor="op")
    await store.gallery.enroll("U1", embeddings(1, seed=41), MODEL)  # no consent at all: not stale
    await clock.advance(DAY)
    notice = NoticePolicy(require_reconsent=True, grace_days=30)
    new = PrivacySection(notice_version="2", notices={"2": notice})
    policy = await Policy(store, new, clock=clock, sink=matcher).open()
    await grant(policy, "S2", ConsentKind.BIOMETRIC, ConsentMethod.APP)  # re-consented under notice 2
    await clock.advance(2 * DAY)
    at = await reconsent.effective_at(policy)
    assert at is not None
    expected = [s for s in await store.gallery.subject_ids() if await reconsent.is_stale(policy, s, at)]
    assert expected == ["S1", "S3"]

    async def per_subject(subject_id: str, **_: object) -> object:
        raise AssertionError("a per-subject round trip in reconsent.status")

    monkeypatch.setattr(policy.consents, "for_subject", per_subject)
    st = await reconsent.status(policy)
    assert st.pending == tuple(expected) and st.lapsed == ()
    await clock.advance(30 * DAY)
    assert (await reconsent.status(policy)).lapsed == tuple(expected)


@pytest.mark.asyncio
async def test_sweep_reads_validity_of_every_subject_without_a_round_trip_each(
    policy: Policy, matcher: Matcher, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    today = dt.datetime.fromtimestamp(clock.wall(), tz=dt.UTC).date()
    subjects = {"VIS": today.isoformat(), "EMP": (today + dt.timedelta(days=30)).isoformat(), "DEP": ""}
    for i, (sid, until) in enumerate(subjects.items()):
        await consent_adult(policy, sid)
        attrs = {"valid_until": until} if until else {"department": "R&D"}  # DEP: no validity
        await policy.enrol_subject(sid, embeddings(1, seed=50 + i), MODEL, actor="op", attributes=attrs)
    await clock.advance(2 * DAY)
    calls: list[str] = []

    async def per_subject(subject_id: str, **_: object) -> object:
        calls.append(subject_id)
        raise AssertionError("a per-subject round trip in the validity check")

    monkeypatch.setattr(policy.store.gallery, "get", per_subject)
    report = await sweep(policy)
    assert calls == [] and report.counts["erased_validity_ended"] == 1
    assert not matcher.has_subject("VIS") and matcher.has_subject("EMP") and matcher.has_subject("DEP")
