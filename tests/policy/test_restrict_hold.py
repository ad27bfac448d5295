"""Restriction of processing, legal hold and re-consent on a real store and the real matcher."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from facegate.handlers.recognition.matcher import Matcher
from facegate.policy import (
    ConsentKind,
    ConsentMethod,
    ConsentState,
    GalleryWatcher,
    Policy,
    export_subject,
    holds,
    reconsent,
    restriction,
    sweep,
)
from facegate.policy.errors import ConsentInputError, HoldNotFoundError, SubjectRestrictedError
from facegate.runtime.clock import ManualClock
from facegate.runtime.config.privacy import NoticePolicy, PrivacySection
from facegate.runtime.events import Event, PrivacyEvent, PrivacyKind
from facegate.storage import KekSource, Store, verify_chain

from .conftest import DAY, EVIDENCE, MODEL, consent_adult, embeddings, matches


def receipts_of(events: list[Event], kind: PrivacyKind) -> list[PrivacyEvent]:
    return [e for e in events if isinstance(e, PrivacyEvent) and e.kind is kind]


async def audit_actions(store: Store, subject_id: str | None = None) -> list[str]:
    rows = await store.db.fetchall("SELECT action, subject_id FROM audit ORDER BY seq")
    return [str(a) for a, s in rows if subject_id is None or s == subject_id]


@pytest.mark.asyncio
async def test_restrict_is_unmatchable_before_return_kept_exported_and_reversible(
    policy: Policy, matcher: Matcher, events: list[Event]
) -> None:
    await consent_adult(policy, "R1")
    emb = embeddings(2, seed=21)
    await policy.enrol_subject("R1", emb, MODEL, actor="op")
    assert matches(matcher, "R1", emb[0])

    out = await restriction.restrict(policy, "R1", actor="dpo", reason="accuracy_contested")
    assert out.changed and not matches(matcher, "R1", emb[0])  # before the call returned
    assert out.unmatchable_s < 1.0
    # Kept, encrypted: the templates are still in the store.
    rec = await policy.store.gallery.get("R1", include_embeddings=True)
    assert rec.embeddings is not None and len(rec.templates) == 2
    # Never reloaded while restricted (e.g. by the watcher or a consent change).
    await policy.reload("R1")
    assert not matches(matcher, "R1", emb[0])
    # Excluded from further processing: enrolment and rectification refused.
    with pytest.raises(SubjectRestrictedError):
        await policy.enrol_subject("R1", embeddings(1, seed=22), MODEL, actor="op")
    with pytest.raises(SubjectRestrictedError):
        await policy.rectify("R1", actor="op", set_attributes={"department": "ops"})
    # Visible in the export.
    body = json.loads(json.loads(await export_subject(policy, "R1", actor="dpo"))["payload"])
    assert body["subject"]["processing"]["restricted"] is True
    assert body["subject"]["processing"]["unmatchable_reason"] == "restricted"
    # Idempotent: no second receipt.
    assert not (await restriction.restrict(policy, "R1", actor="dpo")).changed

    back = await restriction.unrestrict(policy, "R1", actor="dpo")
    assert back.changed and matches(matcher, "R1", emb[0])
    got = receipts_of(events, PrivacyKind.RESTRICTION)
    assert [e.detail for e in got] == ["restricted", "unrestricted"]
    assert [e.receipt_id for e in got] == [out.receipt_id, back.receipt_id]
    assert (await audit_actions(policy.store, "R1")).count("restrict") == 1
    assert "unrestrict" in await audit_actions(policy.store, "R1")
    assert verify_chain(policy.store.db.path).ok


@pytest.mark.asyncio
async def test_restricted_subject_stays_unmatchable_after_restart(
    store: Store, privacy: PrivacySection, clock: ManualClock, policy: Policy
) -> None:
    await consent_adult(policy, "R2")
    emb = embeddings(1, seed=23)
    await policy.enrol_subject("R2", emb, MODEL, actor="op")
    await restriction.restrict(policy, "R2", actor="dpo")
    fresh = Matcher(MODEL, 128, threads=1)
    await store.gallery.load_all(fresh)  # what recognition does at start-up
    assert matches(fresh, "R2", emb[0])
    await Policy(store, privacy, clock=clock, sink=fresh).open()
    assert not matches(fresh, "R2", emb[0])


@pytest.mark.asyncio
async def test_legal_hold_defers_erasure_and_sweeper_then_lapse_runs_it(
    policy: Policy, matcher: Matcher, events: list[Event], clock: ManualClock
) -> None:
    cid = await consent_adult(policy, "H1")
    await consent_adult(policy, "H2")
    emb = embeddings(1, seed=31)
    await policy.enrol_subject("H1", emb, MODEL, actor="op")
    await policy.enrol_subject("H2", embeddings(1, seed=32), MODEL, actor="op")
    with pytest.raises(ConsentInputError):
        await holds.set_hold(policy, "H1", reason="free text!", expires_at=clock.wall() + DAY, actor="dpo")
    hold = await holds.set_hold(
        policy, "H1", reason="case:2026/17", expires_at=clock.wall() + 10 * DAY, actor="dpo"
    )

    # Withdrawal while held: consent withdrawn, unmatchable, data kept, the receipt says deferred.
    _, out = await policy.withdraw_consent(cid, actor="subject-app")
    assert out is not None and out.deferred and out.receipt is None
    assert not matches(matcher, "H1", emb[0])
    assert await policy.is_enrolled("H1")
    deferred = [e for e in receipts_of(events, PrivacyKind.ERASURE) if e.subject_id == "H1"]
    assert len(deferred) == 1 and deferred[0].detail == "deferred:legal_hold:consent_withdrawn"
    assert dict(deferred[0].counts)["deferred"] == 1
    # An explicit erasure request while held: still deferred, said so, not audited twice.
    again = await policy.erase_subject("H1", actor="dpo")
    assert again.deferred
    # The sweeper keeps it too (it is unpermitted now) and counts it.
    report = await sweep(policy)
    assert report.counts["deferred_held"] == 1 and await policy.is_enrolled("H1")
    assert (await audit_actions(policy.store, "H1")).count("erasure_deferred") == 1
    body = json.loads(json.loads(await export_subject(policy, "H1", actor="dpo"))["payload"])
    assert body["subject"]["processing"]["erasure_deferred"] is True
    assert body["subject"]["processing"]["legal_holds"][0]["hold_id"] == hold.hold_id

    # The hold lapses: the next sweep marks it and runs the pending erasure.
    await clock.advance(11 * DAY)
    report = await sweep(policy)
    assert report.counts["holds_lapsed"] == 1, report
    assert report.counts["erased_after_hold"] == 1, report
    assert not await policy.is_enrolled("H1") and await policy.is_enrolled("H2")
    actions = await audit_actions(policy.store)
    assert "legal_hold" in actions and "legal_hold_lapse" in actions
    kinds = [e.detail.split(":")[0] for e in receipts_of(events, PrivacyKind.LEGAL_HOLD)]
    assert kinds == ["set", "lapsed"]
    assert verify_chain(policy.store.db.path).ok


@pytest.mark.asyncio
async def test_device_hold_keeps_everything_until_released(
    policy: Policy, clock: ManualClock, events: list[Event]
) -> None:
    cid = await consent_adult(policy, "D1")
    await policy.enrol_subject("D1", embeddings(1, seed=41), MODEL, actor="op")
    hold = await holds.set_hold(
        policy, None, reason="authority-req-9", expires_at=clock.wall() + 400 * DAY, actor="dpo"
    )
    # Consent withdrawn behind the policy's back (registry only): the sweeper must erase it.
    await policy.consents.transition(cid, ConsentState.WITHDRAWN, actor="x", reason="test")
    await clock.advance(366 * DAY)  # past template idle and access-event retention
    report = await sweep(policy)
    assert report.counts["device_hold"] == 1 and report.counts["deferred_held"] == 1
    assert await policy.is_enrolled("D1")
    with pytest.raises(HoldNotFoundError):
        await holds.release_hold(policy, "00000000-0000-0000-0000-000000000000", actor="dpo")
    ran = await holds.release_hold(policy, hold.hold_id, actor="dpo")
    assert ran == 1 and not await policy.is_enrolled("D1")
    assert "legal_hold_release" in await audit_actions(policy.store)


@pytest.mark.asyncio
async def test_reconsent_after_material_notice_change_with_grace(
    store: Store, clock: ManualClock, matcher: Matcher, events: list[Event]
) -> None:
    old = await Policy(store, PrivacySection(notice_version="1"), clock=clock, sink=matcher).open()
    await consent_adult(old, "N1")
    await consent_adult(old, "N2")
    e1, e2 = embeddings(1, seed=51), embeddings(1, seed=52)
    await old.enrol_subject("N1", e1, MODEL, actor="op")
    await old.enrol_subject("N2", e2, MODEL, actor="op")
    await clock.advance(DAY)

    new_privacy = PrivacySection(
        notice_version="2", notices={"2": NoticePolicy(require_reconsent=True, grace_days=30)}
    )
    policy = await Policy(store, new_privacy, clock=clock, sink=matcher).open()
    assert receipts_of(events, PrivacyKind.RECONSENT)[-1].detail == "notice 2"
    st = await reconsent.status(policy)
    assert st.pending == ("N1", "N2") and st.lapsed == ()
    assert matches(matcher, "N1", e1[0])  # in grace: still matchable
    # N2 consents again under notice 2.
    await policy.consents.grant(
        subject_id="N2",
        kind=ConsentKind.BIOMETRIC,
        method=ConsentMethod.APP,
        evidence_digest=EVIDENCE,
        actor="app",
        activate=True,
    )
    assert (await reconsent.status(policy)).pending == ("N1",)

    await clock.advance(31 * DAY)
    report = await sweep(policy)
    assert report.counts["reconsent_lapsed"] == 1 and report.counts["reconsent_pending"] == 0
    assert not matches(matcher, "N1", e1[0]) and matches(matcher, "N2", e2[0])
    assert await policy.is_enrolled("N1")  # kept, encrypted, until re-consent or retention
    # Re-consent makes it matchable again.
    await policy.consents.grant(
        subject_id="N1",
        kind=ConsentKind.BIOMETRIC,
        method=ConsentMethod.KIOSK,
        evidence_digest=EVIDENCE,
        actor="kiosk",
        activate=True,
    )
    await policy.reload("N1")
    assert matches(matcher, "N1", e1[0])
    assert "notice_change" in await audit_actions(store)
    # Reopening with the same notice does not restart the grace period.
    await Policy(store, new_privacy, clock=clock, sink=matcher).open()
    assert len(receipts_of(events, PrivacyKind.RECONSENT)) == 1


def test_reconsent_config_is_per_version(tmp_path: Path) -> None:
    from facegate.runtime.config import load_config  # noqa: PLC0415

    cfg = tmp_path / "d.toml"
    cfg.write_text(
        '[device]\nid = "g"\n[privacy]\nnotice_version = "3"\n'
        '[privacy.notices."3"]\nrequire_reconsent = true\ngrace_days = 14\n'
    )
    loaded = load_config(cfg)
    assert loaded.config.privacy.notices["3"] == NoticePolicy(require_reconsent=True, grace_days=14)
    cfg.write_text('[device]\nid = "g"\n[privacy.notices."3"]\nrequire_reconsnt = true\n')
    with pytest.raises(Exception, match="require_reconsnt"):
        load_config(cfg)


@pytest.mark.asyncio
async def test_cli_restriction_reaches_the_device_matcher_within_one_poll(
    policy: Policy, matcher: Matcher, kek: KekSource, clock: ManualClock
) -> None:
    watcher = GalleryWatcher(policy, clock=clock)
    emb = embeddings(1, seed=61)
    await consent_adult(policy, "C1")
    await policy.enrol_subject("C1", emb, MODEL, actor="device")
    assert await watcher.poll() == 0  # baseline
    async with Store(policy.store.db.path, kek, clock=clock) as other:  # stands in for the CLI process
        cli = await Policy(other, policy.privacy, clock=clock).open()
        await restriction.restrict(cli, "C1", actor="cli")
    assert await watcher.poll() == 1 and not matches(matcher, "C1", emb[0])
    async with Store(policy.store.db.path, kek, clock=clock) as other:
        cli = await Policy(other, policy.privacy, clock=clock).open()
        await restriction.unrestrict(cli, "C1", actor="cli")
    assert await watcher.poll() == 1 and matches(matcher, "C1", emb[0])


def test_rights_bench_runs_and_prints_its_numbers(capsys: pytest.CaptureFixture[str]) -> None:
    from facegate.policy import rights_bench  # noqa: PLC0415

    assert rights_bench.main(["--subjects", "20", "--rounds", "3", "--tamper-rounds", "1"]) == 0
    out = capsys.readouterr().out
    assert "restrict-to-unmatchable over 20 subjects" in out and "vault shredded" in out
