"""Gallery API on a real SQLite file pair: enrol, get, load, erase, tamper, no plaintext."""

from __future__ import annotations

import io
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import structlog
from facegate.handlers.recognition import Matcher
from facegate.runtime.clock import ManualClock
from facegate.runtime.events import Event, SecurityEvent, SecurityKind
from facegate.runtime.logs import configure_logging
from facegate.storage import KekSource, Store
from facegate.storage.crypto import AuthenticationFailed, open_sealed, template_aad
from facegate.storage.errors import InvalidInputError, KeyUnavailableError, SubjectNotFoundError

from .conftest import RecordingSink, embeddings, raw


@pytest.mark.asyncio
async def test_enrol_get_count_and_load(store: Store) -> None:
    a, b = embeddings(3, seed=1), embeddings(2, d=512, seed=2)
    res = await store.gallery.enroll("E1001", a, "sface-2021dec", actor="op-7", consent_ref="c-1")
    assert res.created_subject and len(res.template_ids) == 3
    await store.gallery.enroll("E1002", b, "arcface-r100")
    await store.gallery.enroll("E1001", embeddings(1, seed=3), "sface-2021dec")
    await store.gallery.set_attributes("E1001", display_name="Ada L.", attributes={"dept": "R&D"})
    assert await store.gallery.count() == 6
    assert await store.gallery.count_subjects() == 2
    rec = await store.gallery.get("E1001", include_embeddings=True)
    assert rec.display_name == "Ada L." and rec.attributes == {"dept": "R&D"}
    assert rec.embeddings is not None and rec.embeddings.shape == (4, 128)
    np.testing.assert_array_equal(rec.embeddings[:3], a)
    sink = RecordingSink()
    report = await store.gallery.load_all(sink, batch=2)
    assert report.templates == 6 and report.subjects == 2 and not report.failures
    assert sink.models == {"sface-2021dec", "arcface-r100"}
    for tid, vec in zip(res.template_ids, a, strict=True):
        np.testing.assert_array_equal(sink.rows[("E1001", tid)], vec)


@pytest.mark.asyncio
async def test_bad_input_is_refused_and_writes_nothing(store: Store) -> None:
    cases: list[tuple[str, object, str]] = [
        ("bad id!", embeddings(1), "m"),
        ("ok", embeddings(1), ""),
        ("ok", np.full((1, 128), np.nan, np.float32), "m"),
        ("ok", np.zeros((0, 128), np.float32), "m"),
        ("ok", np.zeros((2, 2, 2), np.float32), "m"),
    ]
    for sid, emb, model in cases:
        with pytest.raises(InvalidInputError):
            await store.gallery.enroll(sid, emb, model)
    with pytest.raises(InvalidInputError, match="limit"):
        await store.gallery.enroll("ok", embeddings(21), "m")
    assert await store.gallery.count() == 0
    assert await store.gallery.count_subjects() == 0
    with pytest.raises(SubjectNotFoundError):
        await store.gallery.get("nobody")
    with pytest.raises(SubjectNotFoundError):
        await store.gallery.remove("nobody")


@pytest.mark.asyncio
async def test_attached_sink_follows_enrol_and_remove(store: Store) -> None:
    sink = RecordingSink()
    store.gallery.attach(sink)
    await store.gallery.enroll_many([("a1", embeddings(2, seed=1)), ("a2", embeddings(1))], "m")
    assert sink.subjects() == {"a1", "a2"}
    receipt = await store.gallery.remove("a1", actor="op")
    assert receipt.templates == 2 and sink.removed == ["a1"] and sink.subjects() == {"a2"}


def _tamper(db_path: Path, fn: str) -> None:
    conn = sqlite3.connect(db_path)
    rows = conn.execute("SELECT rowid, ciphertext FROM templates ORDER BY rowid").fetchall()
    if fn == "flip":
        ct = bytearray(rows[0][1])
        ct[20] ^= 0x01
        conn.execute("UPDATE templates SET ciphertext = ? WHERE rowid = ?", (bytes(ct), rows[0][0]))
    else:  # swap the ciphertexts of two rows of different subjects
        conn.execute("UPDATE templates SET ciphertext = ? WHERE rowid = ?", (rows[-1][1], rows[1][0]))
        conn.execute("UPDATE templates SET ciphertext = ? WHERE rowid = ?", (rows[1][1], rows[-1][0]))
    conn.commit()
    conn.close()


@pytest.mark.asyncio
@pytest.mark.parametrize("attack", ["flip", "swap"])
async def test_tampered_templates_are_quarantined_and_reported(
    db_path: Path, kek: KekSource, attack: str
) -> None:
    async with Store(db_path, kek) as st:
        for i in range(5):
            await st.gallery.enroll(f"s{i}", embeddings(2, seed=i), "m")
    _tamper(db_path, attack)
    seen: list[Event] = []
    async with Store(db_path, kek, publish=seen.append, clock=ManualClock()) as st:
        sink = RecordingSink()
        report = await st.gallery.load_all(sink)
        bad = 1 if attack == "flip" else 2
        assert len(report.failures) == bad and report.templates == 10 - bad
        sec = [e for e in seen if isinstance(e, SecurityEvent)]
        assert len(sec) == bad and all(e.kind is SecurityKind.TAMPER for e in sec)
        assert {e.subject_id for e in sec} == {f.subject_id for f in report.failures}
        assert len(sink.subjects()) == 5 if attack == "flip" else len(sink.subjects()) >= 4
        # Quarantined rows are kept (evidence) but never loaded again.
        assert await st.gallery.count() == 10 - bad
        again = await st.gallery.load_all(RecordingSink())
        assert again.templates == 10 - bad and not again.failures
        rows = await st.db.fetchall(
            "SELECT quarantine_reason FROM templates WHERE quarantined_at IS NOT NULL"
        )
        assert [r[0] for r in rows] == ["authentication_failed"] * bad
        assert (await st.verify_audit()).ok


def _windows(vectors: npt.NDArray[np.float32]) -> set[bytes]:
    out: set[bytes] = set()
    for v in vectors:
        raw = v.tobytes()
        out.update(raw[i : i + 16] for i in range(len(raw) - 15))
    return out


@pytest.mark.asyncio
async def test_no_plaintext_embedding_in_db_wal_vault_or_logs(db_path: Path, kek: KekSource) -> None:
    buf = io.StringIO()
    configure_logging(device_id="test-dev", level="debug", fmt="json", stream=buf)
    try:
        known = embeddings(6, seed=42)
        async with Store(db_path, kek) as st:
            for i in range(3):
                await st.gallery.enroll(f"p{i}", known[2 * i : 2 * i + 2], "m", actor="op")
            await st.gallery.set_attributes("p0", display_name="Zebulon Quaxley", attributes={})
            await st.gallery.load_all(RecordingSink())
            wal = raw(Path(f"{db_path}-wal"))  # read while the WAL still holds frames
            vault_wal = raw(Path(f"{st.db.vault_path}-wal"))
            assert len(wal) > 0
            await st.gallery.get("p1", include_embeddings=True)
        blobs = {
            "db": raw(db_path),
            "wal": wal,
            "vault": raw(st.db.vault_path),
            "vault-wal": vault_wal,
            "log": buf.getvalue().encode(),
        }
    finally:
        structlog.reset_defaults()
    windows = _windows(known)
    for where, data in blobs.items():
        hits = [w for w in windows if w in data]
        assert not hits, f"plaintext embedding bytes found in {where}"
        assert b"Zebulon" not in data, f"display name found in {where}"
    assert b"storage.gallery_loaded" in blobs["log"]


@pytest.mark.asyncio
async def test_erasure_shreds_copies_and_leaves_no_template_bytes(
    db_path: Path, kek: KekSource, tmp_path: Path
) -> None:
    victim = embeddings(3, seed=7)
    async with Store(db_path, kek) as st:
        await st.gallery.enroll("victim", victim, "m")
        await st.gallery.enroll("other", embeddings(2, seed=8), "m")
        await st.db.checkpoint()
        rows = await st.db.fetchall(
            "SELECT template_id, ciphertext FROM templates WHERE subject_id = 'victim'"
        )
        tids, cts = [str(r[0]) for r in rows], [bytes(r[1]) for r in rows]
        copy = tmp_path / "copy.db"
        shutil.copy2(db_path, copy)  # a backup taken before the erasure
        receipt = await st.gallery.remove("victim", actor="dpo", reason="withdrawal")
        assert receipt.templates == 3
        with pytest.raises(SubjectNotFoundError):
            await st.gallery.get("victim")
        live_vault = st.db.vault_path
    # The live files hold no ciphertext of the victim any more (secure_delete + checkpoint).
    for path in (db_path, Path(f"{db_path}-wal"), live_vault):
        data = raw(path) if path.exists() else b""
        for ct in cts:
            assert ct[12:40] not in data, f"victim ciphertext left in {path.name}"
    # The old copy, opened with today's key material (same KEK, live vault), cannot decrypt it.
    seen: list[Event] = []
    async with Store(copy, kek, vault_path=live_vault, publish=seen.append) as old:
        with pytest.raises(KeyUnavailableError):
            await old.gallery.get("victim", include_embeddings=True)
        sink = RecordingSink()
        await old.gallery.load_all(sink)
        assert sink.subjects() == {"other"}
        keys = await old.db.fetchall("SELECT subject_id, kek_id, wrapped FROM vault.subject_keys")
        for sid, kid, wrapped in keys:  # no key that exists today opens the victim's rows
            dek = old.keys.unwrap(sid, kid, bytes(wrapped))
            for tid, ct in zip(tids, cts, strict=True):
                with pytest.raises(AuthenticationFailed):
                    open_sealed(dek.aead, ct, template_aad("victim", tid, "m"))
    assert any(isinstance(e, SecurityEvent) and e.kind is SecurityKind.DECRYPT_FAILURE for e in seen)


@pytest.mark.asyncio
async def test_load_into_the_real_matcher_and_erase_makes_unmatchable(store: Store) -> None:
    vecs = {f"m{i}": embeddings(2, seed=100 + i) for i in range(20)}
    await store.gallery.enroll_many(list(vecs.items()), "sface-test")
    await store.gallery.enroll("old-model", embeddings(1, seed=5), "other-model")
    matcher = Matcher("sface-test", 128)
    report = await store.gallery.load_all(matcher, model_id="sface-test")
    assert report.templates == 40 and report.other_models == 1
    assert matcher.subject_count == 20
    best = matcher.search(vecs["m7"][0], k=1).best
    assert best is not None and best.subject_id == "m7" and best.score > 0.99
    store.gallery.attach(matcher)
    await store.gallery.remove("m7", actor="dpo")
    assert not matcher.has_subject("m7")
    after = matcher.search(vecs["m7"][0], k=1).best
    assert after is not None and after.subject_id != "m7"
