"""Issue 16: offline provisioning never fills the outbox nor blocks privacy/access events.

Scaled down: the outbox bound is 40 and 150 people are provisioned offline
(age record, biometric consent granted and activated, enrolment), i.e. 300
consent receipts, the shape that failed at 50,000 of 100,000 on a real device.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest
from facegate.handlers.recognition.matcher import Matcher
from facegate.policy import ConsentKind, ConsentMethod, Policy
from facegate.policy.core import EnrolItem
from facegate.runtime.clock import ManualClock
from facegate.runtime.config.privacy import PrivacySection
from facegate.storage import EventClass, KekSource, Store
from facegate.storage.audit import verify_chain

from .conftest import EVIDENCE, MODEL, embeddings

BOUND = 40
PEOPLE = 150


async def _provision(policy: Policy, sid: str, seed: int) -> str:
    await policy.consents.record_age(sid, birth_date=date(1985, 1, 1), actor="import")
    rec = await policy.consents.grant(
        subject_id=sid,
        kind=ConsentKind.BIOMETRIC,
        method=ConsentMethod.PAPER,
        evidence_digest=EVIDENCE,
        actor="import",
        activate=True,
    )
    return rec.consent_id


@pytest.mark.asyncio
async def test_offline_provisioning_beyond_the_bound_succeeds_and_privacy_events_still_fit(
    db_path: Path, kek: KekSource, clock: ManualClock, matcher: Matcher
) -> None:
    async with Store(db_path, kek, clock=clock, outbox_max_pending=BOUND) as store:
        policy = await Policy(store, PrivacySection(), clock=clock, sink=matcher).open()
        consents = {}
        x = embeddings(PEOPLE, seed=16)
        for i in range(PEOPLE):  # today: OutboxFullError at person BOUND // 2
            consents[f"P{i}"] = await _provision(policy, f"P{i}", i)
        await policy.enrol_many(
            [EnrolItem(f"P{i}", x[i : i + 1]) for i in range(PEOPLE)], MODEL, actor="import"
        )
        assert matcher.subject_count == PEOPLE
        ob = store.outbox
        assert ob.provisioning_backlog <= ob.max_provisioning
        # Nothing was lost: every receipt is either pending on its own or counted in a summary.
        rows = await store.db.fetchall(
            "SELECT payload FROM outbox WHERE klass = 'provisioning' AND delivered_at IS NULL ORDER BY seq"
        )
        total = 0
        for (p,) in rows:
            body = json.loads(bytes(p))
            total += body["events"] if body["kind"] == "receipts_coalesced" else 1
        assert total == 2 * PEOPLE
        # Each folded change is still in the audit chain.
        changes = await store.db.fetchone("SELECT COUNT(*) FROM audit WHERE action = 'consent_change'")
        assert changes == (2 * PEOPLE,)
        assert verify_chain(store.db.path).ok
        # The full bound is still available to access and privacy events.
        for i in range(BOUND - 2):  # the withdrawal below adds two privacy receipts
            rec = await ob.append("event/access", b'{"n":%d}' % i, klass=EventClass.ACCESS)
            assert rec is not None
        await policy.withdraw_consent(consents["P7"], actor="dpo")
        erased = await store.db.fetchall(
            "SELECT payload FROM outbox WHERE klass = 'privacy' AND delivered_at IS NULL"
        )
        kinds = [json.loads(bytes(p))["kind"] for (p,) in erased]
        assert "consent_changed" in kinds and "erasure" in kinds
        assert not matcher.has_subject("P7")


@pytest.mark.asyncio
async def test_coalesced_backlog_survives_reopen_and_delivery_in_order(
    db_path: Path, kek: KekSource, clock: ManualClock, matcher: Matcher
) -> None:
    async with Store(db_path, kek, clock=clock, outbox_max_pending=BOUND) as store:
        policy = await Policy(store, PrivacySection(), clock=clock, sink=matcher).open()
        await store.outbox.append("event/access", b"first", klass=EventClass.ACCESS)
        for i in range(60):
            await _provision(policy, f"R{i}", i)
        await store.outbox.append("event/access", b"last", klass=EventClass.ACCESS)
        before = store.outbox.backlog
        assert store.outbox.coalesced > 0
    async with Store(db_path, kek, clock=clock, outbox_max_pending=BOUND) as store:
        ob = store.outbox
        assert ob.backlog == before
        page = await ob.pending(limit=1000)
        assert [r.payload for r in page if r.klass is EventClass.ACCESS] == [b"first", b"last"]
        assert page[0].payload == b"first" and page[-1].payload == b"last"  # order kept
        assert await ob.mark_delivered([r.event_id for r in page]) == len(page)
        assert ob.backlog == 0 and ob.provisioning_backlog == 0
        # Summaries carry counts only: no subject id, consent id or name.
        for r in page:
            if r.klass is EventClass.PROVISIONING and b"receipts_coalesced" in r.payload:
                assert b"R1" not in r.payload and b"subject" not in r.payload
