"""Withdrawal and erasure: unmatchable before return, shredded, deleted, audited, receipted."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest
from facegate.handlers.recognition.matcher import Matcher
from facegate.policy import ConsentState, Policy
from facegate.policy.errors import SubjectUnknownError
from facegate.runtime.events import Event, PrivacyEvent, PrivacyKind
from facegate.storage import Store, verify_chain
from facegate.storage.errors import KeyUnavailableError, SubjectNotFoundError

from .conftest import MODEL, consent_adult, embeddings, matches


class OrderProbe:
    """Wraps the real matcher and records, at removal time, whether the DB rows still existed."""

    def __init__(self, matcher: Matcher, db_path: Path) -> None:
        self.matcher = matcher
        self.db_path = db_path
        self.rows_at_removal: list[int] = []

    def add_batch(self, *args: object) -> None:
        self.matcher.add_batch(*args)  # type: ignore[arg-type]  # forwarded unchanged

    def add(self, *args: object) -> None:
        self.matcher.add(*args)  # type: ignore[arg-type]  # forwarded unchanged

    def remove_subject(self, subject_id: str) -> int:
        with sqlite3.connect(self.db_path) as conn:
            (n,) = conn.execute(
                "SELECT COUNT(*) FROM templates WHERE subject_id = ?", (subject_id,)
            ).fetchone()
        self.rows_at_removal.append(int(n))
        return self.matcher.remove_subject(subject_id)


@pytest.mark.asyncio
async def test_withdrawal_makes_subject_unmatchable_then_shreds_and_deletes(
    policy: Policy, matcher: Matcher, events: list[Event], db_path: Path, tmp_path: Path
) -> None:
    probe = OrderProbe(matcher, db_path)
    policy.attach(probe)
    cid = await consent_adult(policy, "W1")
    await consent_adult(policy, "W2")
    emb = embeddings(2, seed=11)
    await policy.enrol_subject("W1", emb, MODEL, actor="op", display_name="Wanda")
    await policy.enrol_subject("W2", embeddings(2, seed=12), MODEL, actor="op")
    assert matches(matcher, "W1", emb[0])
    await policy.store.checkpoint()
    before = tmp_path / "before.db"
    shutil.copy(db_path, before)

    record, outcome = await policy.withdraw_consent(cid, actor="subject-app")

    assert record.state is ConsentState.WITHDRAWN
    assert outcome is not None and outcome.receipt is not None and outcome.receipt.templates == 2
    # Unmatchable first: the matcher lost the subject while its rows still existed.
    assert probe.rows_at_removal[0] == 2  # (storage removes it again, idempotently)
    assert not matcher.has_subject("W1") and matcher.has_subject("W2")
    assert not matches(matcher, "W1", emb[0])
    with pytest.raises(SubjectNotFoundError):
        await policy.store.gallery.get("W1")
    db = policy.store.db
    assert await db.fetchone("SELECT 1 FROM vault.subject_keys WHERE subject_id = 'W1'") is None
    assert await db.fetchone("SELECT 1 FROM policy_age WHERE subject_id = 'W1'") is None
    # WAL checkpointed (TRUNCATE): nothing of the erased rows waits in the WAL.
    wal = Path(f"{db_path}-wal")
    assert not wal.exists() or wal.stat().st_size == 0  # noqa: ASYNC240  # a tiny stat in a test
    # The consent record stays, withdrawn, as evidence.
    assert (await policy.consents.get(cid)).state is ConsentState.WITHDRAWN
    # Receipt: bus event + outbox row, ids and counts only.
    erasures = [e for e in events if isinstance(e, PrivacyEvent) and e.kind is PrivacyKind.ERASURE]
    assert len(erasures) == 1 and erasures[0].receipt_id == outcome.receipt.receipt_id
    assert dict(erasures[0].counts)["templates"] == 2
    rows = await db.fetchall("SELECT payload FROM outbox WHERE klass = 'privacy'")
    bodies = [json.loads(bytes(r[0])) for r in rows]
    assert any(b["kind"] == "erasure" and b["receipt_id"] == outcome.receipt.receipt_id for b in bodies)
    assert all("Wanda" not in bytes(r[0]).decode() for r in rows)
    audit = await db.fetchall("SELECT action FROM audit WHERE subject_id = 'W1' ORDER BY seq")
    assert [a for (a,) in audit][-1] == "erase"
    assert verify_chain(db_path).ok
    # A copy of the main file taken before the erasure no longer decrypts: its key is gone.
    async with Store(before, policy.store.keys.source, vault_path=policy.store.db.vault_path) as old:
        with pytest.raises(KeyUnavailableError):
            await old.gallery.get("W1", include_embeddings=True)


@pytest.mark.asyncio
async def test_erase_subject_withdraws_live_consents(policy: Policy, matcher: Matcher) -> None:
    cid = await consent_adult(policy, "W3")
    await policy.enrol_subject("W3", embeddings(1, seed=3), MODEL, actor="op")
    outcome = await policy.erase_subject("W3", actor="dpo")
    assert outcome.consents_withdrawn == 1 and not matcher.has_subject("W3")
    assert (await policy.consents.get(cid)).state is ConsentState.WITHDRAWN
    with pytest.raises(SubjectUnknownError):
        await policy.erase_subject("W3", actor="dpo")


@pytest.mark.asyncio
async def test_withdrawal_of_one_of_two_consents_keeps_subject(policy: Policy, matcher: Matcher) -> None:
    first = await consent_adult(policy, "W4")
    await consent_adult(policy, "W4")
    emb = embeddings(1, seed=4)
    await policy.enrol_subject("W4", emb, MODEL, actor="op")
    _, outcome = await policy.withdraw_consent(first, actor="op")
    # Detached before the commit, then reloaded because the second consent still permits it.
    assert outcome is None and matches(matcher, "W4", emb[0])


@pytest.mark.asyncio
async def test_erasure_of_a_consented_but_never_enrolled_subject(policy: Policy) -> None:
    await consent_adult(policy, "W5")
    outcome = await policy.withdraw_subject("W5", actor="subject")
    assert outcome.receipt is None and outcome.consents_withdrawn == 1
    assert await policy.consents.age("W5") is None
