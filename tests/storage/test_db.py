"""Pragmas, migrations, newer-schema refusal and the start-up integrity check."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from facegate.runtime.clock import ManualClock
from facegate.runtime.events import Event, SecurityEvent, SecurityKind
from facegate.storage import KekSource, Store
from facegate.storage.db import Database
from facegate.storage.errors import IntegrityCheckError, SchemaTooNewError
from facegate.storage.migrations import SCHEMA_VERSION

from .conftest import embeddings, raw


@pytest.mark.asyncio
async def test_pragmas_and_schema(store: Store) -> None:
    db = store.db
    assert (await db.fetchone("PRAGMA main.journal_mode"))[0] == "wal"
    assert (await db.fetchone("PRAGMA vault.journal_mode"))[0] == "wal"
    assert (await db.fetchone("PRAGMA foreign_keys"))[0] == 1
    assert (await db.fetchone("PRAGMA main.secure_delete"))[0] == 1
    assert (await db.fetchone("PRAGMA vault.secure_delete"))[0] == 1
    assert (await db.fetchone("PRAGMA busy_timeout"))[0] == 5000
    assert (await db.fetchone("PRAGMA main.user_version"))[0] == SCHEMA_VERSION
    tables = {r[0] for r in await db.fetchall("SELECT name FROM sqlite_schema WHERE type='table'")}
    assert {"subjects", "templates", "consents", "outbox", "audit", "kv_state"} <= tables
    vault = {r[0] for r in await db.fetchall("SELECT name FROM vault.sqlite_schema WHERE type='table'")}
    assert {"subject_keys", "key_meta"} <= vault
    async with store.transaction() as tx:
        assert tx.at == store.clock.wall()


@pytest.mark.asyncio
async def test_reopen_is_idempotent_and_newer_schema_refused(db_path: Path, kek: KekSource) -> None:
    async with Store(db_path, kek) as st:
        await st.gallery.enroll("s1", embeddings(1), "m1")
    async with Store(db_path, kek) as st:
        assert await st.gallery.count() == 1
    conn = sqlite3.connect(db_path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(SchemaTooNewError, match="newer than this facegate"):
        async with Store(db_path, kek):
            pass


def _corrupt_index(db_path: Path) -> None:
    """Zero the root page of an index: a structural fault that quick_check reports."""
    conn = sqlite3.connect(db_path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    (root,) = conn.execute(
        "SELECT rootpage FROM sqlite_schema WHERE name = 'sqlite_autoindex_templates_1'"
    ).fetchone()
    conn.close()
    with db_path.open("r+b") as f:
        f.seek((root - 1) * page_size)
        f.write(b"\x00" * page_size)


@pytest.mark.asyncio
async def test_integrity_failure_refuses_start_and_raises_security_event(
    db_path: Path, kek: KekSource
) -> None:
    async with Store(db_path, kek) as st:
        for i in range(30):
            await st.gallery.enroll(f"s{i}", embeddings(2, seed=i), "m1")
    _corrupt_index(db_path)
    before = raw(db_path)
    seen: list[Event] = []
    with pytest.raises(IntegrityCheckError, match="use --repair"):
        async with Store(db_path, kek, publish=seen.append, clock=ManualClock()):
            pass
    assert [e.kind for e in seen if isinstance(e, SecurityEvent)] == [SecurityKind.INTEGRITY_FAILURE]
    assert raw(db_path) == before  # refused: nothing rewritten

    # --repair keeps a copy of the damaged file, rebuilds the index, and every row survives.
    async with Store(db_path, kek, repair=True, clock=ManualClock()) as st:
        assert await st.gallery.count() == 60
        assert await st.db.integrity_problems() == []
    copies = list(db_path.parent.glob("gallery.db.corrupt-*"))
    assert len(copies) == 1 and copies[0].read_bytes() == before


@pytest.mark.asyncio
async def test_not_a_database_is_a_typed_error(tmp_path: Path) -> None:
    bad = tmp_path / "junk.db"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(Exception) as info:
        async with Database(bad):
            pass
    assert type(info.value).__module__ == "facegate.storage.errors"
