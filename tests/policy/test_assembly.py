"""Device wiring: the policy opens after the store, attaches the matcher, runs its services."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from facegate.handlers.recognition.matcher import Matcher
from facegate.policy.retention import RetentionSweeper
from facegate.runtime.app.policy_parts import policy_services
from facegate.runtime.app.root import open_policy
from facegate.runtime.bus import EventBus
from facegate.runtime.clock import ManualClock
from facegate.runtime.config.privacy import PrivacySection
from facegate.runtime.events import AccessDecision, Decision
from facegate.storage import Store

from .conftest import MODEL, consent_adult, embeddings, matches


@pytest.mark.asyncio
async def test_root_opens_policy_and_runs_sweeper_and_watcher(
    store: Store, clock: ManualClock, matcher: Matcher
) -> None:
    bus = EventBus()
    async with contextlib.AsyncExitStack() as stack:
        policy = await open_policy(
            store, PrivacySection(), clock=clock, matcher=matcher, device_id="gate-1", stack=stack
        )
        services = policy_services(policy, clock=clock, bus=bus)
        assert [s.name for s in services] == [
            "policy.retention",
            "policy.gallery_watch",
            "policy.match_recorder",
        ]
        await consent_adult(policy, "D1")
        emb = embeddings(1, seed=41)
        await policy.enrol_subject("D1", emb, MODEL, actor="op")
        assert matches(matcher, "D1", emb[0])
        tasks = [asyncio.create_task(s.run(), name=s.name) for s in services]
        try:
            sweeper = services[0]
            assert isinstance(sweeper, RetentionSweeper)
            await asyncio.wait_for(sweeper.wait_sweeps(1), 10)
            # A granted decision is recorded as the subject's last match (template retention
            # counts from it); other decisions are not.
            def decision(kind: Decision, at: float) -> AccessDecision:
                return AccessDecision(
                    at=at, event_id=f"e{at}", decision=kind, reason="match", subject_id="D1",
                    score=0.8, runner_up=0.1, margin=0.7, threshold=0.4,
                )

            bus.publish(decision(Decision.DENIED, clock.wall() + 500))
            bus.publish(decision(Decision.GRANTED, clock.wall() + 100))
            for _ in range(200):
                row = await store.db.fetchone("SELECT last_match_at FROM subjects WHERE subject_id = 'D1'")
                if row and row[0]:
                    break
                await asyncio.sleep(0.01)
            assert row is not None and row[0] == pytest.approx(clock.wall() + 100)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    assert policy.sink is None
