"""Device teardown: after destroy, a copy of the database taken before it yields no subject."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest
from facegate.handlers.recognition.matcher import Matcher
from facegate.policy import Policy, destroy
from facegate.policy.errors import DeviceDestroyedError
from facegate.runtime.clock import ManualClock
from facegate.runtime.config.privacy import PrivacySection
from facegate.storage import KekSource, KekSourceKind, Store, init_kek, verify_chain
from facegate.storage.crypto import (
    AESGCM,
    AuthenticationFailed,
    kek_id,
    open_sealed,
    template_aad,
    unwrap_dek,
)
from facegate.storage.errors import KekSourceError
from facegate.storage.kek import read_key_file

from .conftest import MODEL, consent_adult, embeddings, matches


def decryptable_subjects(main: Path, vault: Path, kek: bytes) -> set[str]:
    """Subjects of ``main`` whose templates decrypt with ``vault`` and ``kek`` (an attacker's view)."""
    aead, kid = AESGCM(kek), kek_id(kek)
    with sqlite3.connect(main) as m, sqlite3.connect(vault) as v:
        keys = {
            sid: (k, w) for sid, k, w in v.execute("SELECT subject_id, kek_id, wrapped FROM subject_keys")
        }
        out: set[str] = set()
        for sid, tid, model, ct in m.execute(
            "SELECT subject_id, template_id, model_id, ciphertext FROM templates"
        ):
            if sid not in keys or keys[sid][0] != kid:
                continue
            try:
                dek = AESGCM(unwrap_dek(aead, kid, sid, keys[sid][1]))
                open_sealed(dek, ct, template_aad(sid, tid, model))
            except AuthenticationFailed:
                continue
            out.add(sid)
    return out


@pytest.mark.asyncio
async def test_destroy_shreds_everything_and_old_copies_yield_no_subject(
    tmp_path: Path, clock: ManualClock, matcher: Matcher, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "dev.db"
    vault = tmp_path / "dev.keys.db"
    kek = KekSource(kind=KekSourceKind.FILE, file=tmp_path / "facegate.kek")
    await init_kek(db, kek, clock=clock)
    kek_bytes = read_key_file(tmp_path / "facegate.kek", "kek")
    stopped: list[bool] = []
    async with Store(db, kek, clock=clock) as store:
        policy = await Policy(store, PrivacySection(), clock=clock, sink=matcher).open()
        for i in range(3):
            await consent_adult(policy, f"T{i}")
            await policy.enrol_subject(
                f"T{i}", embeddings(2, seed=i), MODEL, actor="op", display_name=f"N{i}"
            )
        await store.checkpoint()
        shutil.copy(db, tmp_path / "copy.db")
        shutil.copy(vault, tmp_path / "copy.keys.db")
        assert decryptable_subjects(tmp_path / "copy.db", tmp_path / "copy.keys.db", kek_bytes) == {
            "T0",
            "T1",
            "T2",
        }

        report = await destroy(
            policy, actor="installer", kek=kek, stop_recognition=lambda: stopped.append(True)
        )

        assert stopped == [True]
        assert (report.subjects, report.templates, report.keys_shredded) == (3, 6, 3)
        assert report.kek_destroyed and not (tmp_path / "facegate.kek").exists()
        assert len(matcher) == 0 and not matches(matcher, "T0", embeddings(2, seed=0)[0])
        assert await store.gallery.count_subjects() == 0
        assert await store.db.fetchone("SELECT COUNT(*) FROM vault.key_meta") == (0,)
        last = await store.db.fetchone("SELECT action, detail FROM audit ORDER BY seq DESC LIMIT 1")
        assert last is not None and last[0] == "teardown" and '"subjects":3' in last[1]
        rows = await store.db.fetchall("SELECT payload FROM outbox WHERE klass = 'privacy' ORDER BY seq DESC")
        assert json.loads(bytes(rows[0][0]))["kind"] == "teardown"
    assert verify_chain(db).ok
    # The pre-destroy main file with today's vault yields no subject, even with the old KEK bytes.
    assert decryptable_subjects(tmp_path / "copy.db", vault, kek_bytes) == set()
    # The full pre-destroy backup (main + vault) cannot be opened: the KEK file is destroyed.
    with pytest.raises(KekSourceError):
        async with Store(tmp_path / "copy.db", kek, clock=clock, vault_path=tmp_path / "copy.keys.db"):
            pass
    # No personal data left: only the audit log (pseudonymous ids, no biometric data) and receipts.
    assert b"T1" not in vault.read_bytes()
    with sqlite3.connect(db) as conn:
        for table in ("templates", "subjects", "consents", "policy_age", "policy_snapshots"):
            assert conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone() == (0,)  # fixed names
    # The destroyed device refuses to run policy until re-provisioned.
    monkeypatch.setenv("FACEGATE_NEW_KEK", "A" * 43 + "=")
    async with Store(db, KekSource(kind=KekSourceKind.ENV, env="FACEGATE_NEW_KEK"), clock=clock) as again:
        with pytest.raises(DeviceDestroyedError):
            await Policy(again, PrivacySection(), clock=clock).open()
