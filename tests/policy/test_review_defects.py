"""Regression tests for defects found in review (each failed before its fix)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from facegate.handlers.recognition.matcher import Matcher
from facegate.policy import ConsentState, Policy, device_public_key
from facegate.policy.device_keys import rewrap_secrets
from facegate.runtime.clock import ManualClock
from facegate.runtime.config.privacy import PrivacySection
from facegate.storage import KekSource, KekSourceKind, Store
from facegate.storage.crypto import new_key
from facegate.storage.kek import write_key_file

from .conftest import MODEL, consent_adult, embeddings, matches


@pytest.mark.asyncio
async def test_device_secret_wrapped_under_a_key_only_on_disk_does_not_deadlock(
    tmp_path: Path, clock: ManualClock, privacy: PrivacySection
) -> None:
    """A secret re-wrapped by another process under the ``.next`` KEK must still load.

    device_secret refreshed the key ring without its transaction while holding the
    database lock, so the refresh waited for that lock forever.
    """
    key_file = tmp_path / "kek"
    write_key_file(key_file, new_key())
    source = KekSource(kind=KekSourceKind.FILE, file=key_file)
    async with Store(tmp_path / "d.db", source, clock=clock) as store:
        policy = await Policy(store, privacy, clock=clock).open()
        pub = await device_public_key(store)
        # Another process (a rotation) holds the next KEK and re-wraps the secret under it.
        nxt = new_key()
        write_key_file(key_file.with_name("kek.next"), nxt)
        ring = store.keys
        kid = ring.add(nxt)
        async with store.transaction() as tx:
            assert await rewrap_secrets(tx, ring, kid) == 1
        del ring._keks[kid]  # this process has not read the .next file yet
        assert await asyncio.wait_for(device_public_key(policy.store), timeout=10) == pub


@pytest.mark.asyncio
async def test_cancelled_withdrawal_that_committed_does_not_reload_the_subject(
    policy: Policy, matcher: Matcher, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cancellation landing after the withdrawal committed must leave the subject unmatchable.

    Database.transaction shields COMMIT, so a cancel during it raises CancelledError
    although the withdrawal is durable; withdraw_consent then put the subject back.
    """
    cid = await consent_adult(policy, "C1")
    emb = embeddings(2, seed=31)
    await policy.enrol_subject("C1", emb, MODEL, actor="op")
    assert matches(matcher, "C1", emb[0])
    real = policy.consents.transition

    async def committed_then_cancelled(*args: object, **kwargs: object) -> object:
        await real(*args, **kwargs)  # type: ignore[arg-type]  # forwarded unchanged
        raise asyncio.CancelledError  # the cancel arrived while COMMIT ran (shielded)

    monkeypatch.setattr(policy.consents, "transition", committed_then_cancelled)
    with pytest.raises(asyncio.CancelledError):
        await policy.withdraw_consent(cid, actor="subject-app")
    assert (await policy.consents.get(cid)).state is ConsentState.WITHDRAWN
    assert not matcher.has_subject("C1")
    assert not matches(matcher, "C1", emb[0])


@pytest.mark.asyncio
async def test_consent_expired_while_off_is_unmatchable_from_start_up(
    tmp_path: Path, kek: KekSource, privacy: PrivacySection
) -> None:
    """The device loads the gallery before the sweeper's first sweep; an expired subject must not match."""
    clock = ManualClock()
    db = tmp_path / "boot.db"
    emb = embeddings(2, seed=41)
    async with Store(db, kek, clock=clock) as store:
        policy = await Policy(store, privacy, clock=clock).open()
        await consent_adult(policy, "E1", expires_at=clock.wall() + 3600)
        await consent_adult(policy, "E2")
        await policy.enrol_subject("E1", emb, MODEL, actor="op")
        await policy.enrol_subject("E2", embeddings(2, seed=42), MODEL, actor="op")
    clock.set_wall(clock.wall() + 7200)  # the device was off when E1's consent expired
    async with Store(db, kek, clock=clock) as store:
        matcher = Matcher(MODEL, 128, threads=1)
        await store.gallery.load_all(matcher, model_id=MODEL)  # what RecognitionHost does
        store.gallery.attach(matcher)
        await Policy(store, privacy, clock=clock, sink=matcher).open()  # what PolicyHost does
        assert not matches(matcher, "E1", emb[0])
        assert matcher.has_subject("E2")
