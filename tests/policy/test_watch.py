"""Another process's erasure or enrolment reaches the running device's matcher within one poll."""

from __future__ import annotations

import pytest
from facegate.handlers.recognition.matcher import Matcher
from facegate.policy import GalleryWatcher, Policy
from facegate.runtime.clock import ManualClock
from facegate.storage import KekSource, Store

from .conftest import MODEL, consent_adult, embeddings, matches


@pytest.mark.asyncio
async def test_cli_erasure_and_enrolment_reach_the_device_matcher(
    policy: Policy, matcher: Matcher, kek: KekSource, clock: ManualClock
) -> None:
    watcher = GalleryWatcher(policy, clock=clock)
    emb_a, emb_b = embeddings(1, seed=31), embeddings(1, seed=32)
    await consent_adult(policy, "A")
    await policy.enrol_subject("A", emb_a, MODEL, actor="device")
    assert await watcher.poll() == 0  # first poll sets the baseline
    # A second connection to the same files stands in for the CLI process.
    async with Store(policy.store.db.path, kek, clock=clock) as other:
        cli = await Policy(other, policy.privacy, clock=clock).open()
        await cli.erase_subject("A", actor="cli")
        await consent_adult(cli, "B")
        await cli.enrol_subject("B", emb_b, MODEL, actor="cli")
    assert matches(matcher, "A", emb_a[0]) and not matcher.has_subject("B")  # not yet seen
    assert await watcher.poll() == 2
    assert not matcher.has_subject("A") and not matches(matcher, "A", emb_a[0])
    assert matches(matcher, "B", emb_b[0])
    assert await watcher.poll() == 0  # nothing new
