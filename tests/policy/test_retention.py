"""Retention sweeper: every class of data is deleted when its time is up; sweeps are audited."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from datetime import date
from pathlib import Path

import pytest
from facegate.handlers.recognition.matcher import Matcher
from facegate.policy import ConsentKind, ConsentMethod, ConsentState, Policy, RetentionSweeper, sweep
from facegate.policy.errors import SnapshotsDisabledError
from facegate.policy.snapshots import get_snapshot, put_snapshot
from facegate.runtime.clock import ManualClock
from facegate.runtime.config.privacy import PrivacySection
from facegate.runtime.events import Event, PrivacyEvent, PrivacyKind
from facegate.storage import EventClass, verify_chain

from .conftest import DAY, EVIDENCE, MODEL, consent_adult, embeddings, matches


@pytest.mark.asyncio
async def test_sweeper_service_wakes_at_consent_expiry(
    policy: Policy, matcher: Matcher, clock: ManualClock, events: list[Event]
) -> None:
    cid = await consent_adult(policy, "R1", expires_at=clock.wall() + 2 * DAY)
    emb = embeddings(1, seed=1)
    await policy.enrol_subject("R1", emb, MODEL, actor="op")
    sweeper = RetentionSweeper(policy, clock=clock)
    task = asyncio.create_task(sweeper.run(), name="policy.retention")
    try:
        await asyncio.wait_for(sweeper.wait_sweeps(1), 10)
        assert matches(matcher, "R1", emb[0])
        # The next wake is the consent expiry, not the hourly interval... or earlier.
        assert sweeper.next_wake is not None
        await clock.advance(2 * DAY - 10)  # passes many hourly sweeps
        await asyncio.wait_for(sweeper.idle(), 10)
        assert matches(matcher, "R1", emb[0])
        # The next sweep is planned at the expiry, not an hour later.
        assert sweeper.next_wake == pytest.approx(clock.monotonic() + 10)
        n = sweeper.sweeps
        await clock.advance(11)
        await asyncio.wait_for(sweeper.wait_sweeps(n + 1), 10)
        assert not matches(matcher, "R1", emb[0]) and not matcher.has_subject("R1")
        assert (await policy.consents.get(cid)).state is ConsentState.EXPIRED
        assert await policy.store.gallery.count_subjects() == 0
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    sweeps = [e for e in events if isinstance(e, PrivacyEvent) and e.kind is PrivacyKind.RETENTION_SWEEP]
    assert sweeps and dict(sweeps[-1].counts)["consents_expired"] >= 0
    assert any(dict(e.counts).get("erased_no_active_consent") == 1 for e in sweeps)
    rows = await policy.store.db.fetchall("SELECT detail FROM audit WHERE action = 'retention_sweep'")
    assert len(rows) >= 2 and all("consents_expired" in r[0] for r in rows)


@pytest.mark.asyncio
async def test_template_expires_after_idle_days_counted_from_last_match(
    policy: Policy, matcher: Matcher, clock: ManualClock
) -> None:
    await consent_adult(policy, "R2")
    await consent_adult(policy, "R3")
    await policy.enrol_subject("R2", embeddings(1, seed=2), MODEL, actor="op")
    await policy.enrol_subject("R3", embeddings(1, seed=3), MODEL, actor="op")
    await clock.advance(200 * DAY)
    await policy.record_match("R3", clock.wall())
    await clock.advance(165 * DAY + 1)  # R2: 365 days idle; R3: 165 days since its match
    report = await sweep(policy)
    assert report.counts["erased_idle"] == 1
    assert not matcher.has_subject("R2") and matcher.has_subject("R3")
    await clock.advance(200 * DAY)
    report = await sweep(policy)
    assert report.counts["erased_idle"] == 1 and not matcher.has_subject("R3")


@pytest.mark.asyncio
async def test_minor_found_enrolled_without_guardian_is_erased_and_audited(
    policy: Policy, matcher: Matcher
) -> None:
    await policy.consents.record_age("K9", birth_date=date(2016, 1, 1), actor="op")
    await policy.consents.grant(
        subject_id="K9",
        kind=ConsentKind.BIOMETRIC,
        method=ConsentMethod.PAPER,
        evidence_digest=EVIDENCE,
        actor="op",
        activate=True,
    )
    # A path that bypassed policy (storage's internal primitive), as after an old import.
    await policy.store.gallery.enroll("K9", embeddings(1, seed=9), MODEL)
    assert matcher.has_subject("K9")
    report = await sweep(policy)
    assert report.counts["erased_minor_without_guardian"] == 1
    assert not matcher.has_subject("K9") and await policy.store.gallery.count_subjects() == 0
    row = await policy.store.db.fetchone(
        "SELECT detail FROM audit WHERE action = 'erase' AND subject_id = 'K9'"
    )
    assert row is not None and "minor_without_guardian" in row[0]


@pytest.mark.asyncio
async def test_logs_events_outbox_and_consents_expire_per_class(policy: Policy, clock: ManualClock) -> None:
    store = policy.store
    await store.outbox.append(
        "event/access", json.dumps({"subject_id": "A"}).encode(), klass=EventClass.ACCESS
    )
    delivered = await store.outbox.append("event/door", b"{}", klass=EventClass.DOOR)
    assert delivered is not None
    await store.outbox.mark_delivered([delivered.event_id])
    old_cid = await consent_adult(policy, "R4")
    await policy.consents.transition(old_cid, ConsentState.WITHDRAWN, actor="op", reason="test")
    await clock.advance(8 * DAY)
    r = await sweep(policy)
    assert r.counts["outbox_delivered"] == 1 and r.counts["access_events"] == 0
    await clock.advance(83 * DAY)
    r = await sweep(policy)
    assert r.counts["access_events"] == 1 and r.counts["consent_records"] == 0
    await clock.advance(3 * 365 * DAY)
    r = await sweep(policy)
    assert r.counts["consent_records"] == 1 and r.counts["audit_rows"] > 0
    assert await store.db.fetchone("SELECT 1 FROM audit WHERE at < ?", (clock.wall() - 1095 * DAY,)) is None
    assert verify_chain(store.db.path).ok  # purge anchors the chain


@pytest.mark.asyncio
async def test_snapshots_refused_when_off_encrypted_and_kept_at_most_24h(
    policy: Policy, clock: ManualClock, db_path: Path
) -> None:
    with pytest.raises(SnapshotsDisabledError):
        await put_snapshot(policy, decision_id="d1", subject_id=None, image=b"\xff\xd8\xff" + b"x" * 100)
    policy.privacy = replace(policy.privacy, decision_snapshots=True)
    image = b"\xff\xd8\xffJFIF-face-crop" + bytes(range(256))
    sid = await put_snapshot(policy, decision_id="d2", subject_id=None, image=image)
    assert await get_snapshot(policy, sid) == image
    await policy.store.checkpoint()
    assert b"JFIF-face-crop" not in db_path.read_bytes()  # noqa: ASYNC240  # small file, test only
    await clock.advance(23 * 3600)
    assert (await sweep(policy)).counts["snapshots"] == 0
    await clock.advance(3601)
    assert (await sweep(policy)).counts["snapshots"] == 1


def test_privacy_defaults_match_the_issue() -> None:
    p = PrivacySection()
    assert p.minor_age == 14 and not p.decision_snapshots
    r = p.retention
    assert (r.template_idle_days, r.access_event_days, r.delivered_outbox_days, r.audit_days) == (
        365,
        90,
        7,
        1095,
    )
    assert r.snapshot_hours <= 24
