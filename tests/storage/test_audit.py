"""Hash-chained audit log and ``facegate audit verify``."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from facegate.runtime.app.cli import main as cli_main
from facegate.storage import KekSource, Store, verify_chain
from facegate.storage.audit import purge_before
from facegate.storage.errors import InvalidInputError

from .conftest import raw, write_raw


async def _fill(db_path: Path, kek: KekSource, n: int) -> None:
    async with Store(db_path, kek) as st:
        for i in range(1, n + 1):
            async with st.transaction() as tx:
                await st.audit(
                    tx,
                    actor=f"actor-{i:05d}",
                    action="door_command",
                    subject_id=None,
                    detail={"verb": "open", "n": i},
                )


@pytest.mark.asyncio
async def test_one_changed_byte_is_named(
    db_path: Path, kek: KekSource, capsys: pytest.CaptureFixture[str]
) -> None:
    await _fill(db_path, kek, 60)
    assert cli_main(["audit", "verify", "--db", str(db_path)]) == 0
    assert "intact: 60 row(s)" in capsys.readouterr().out
    data = bytearray(raw(db_path))
    at = data.find(b"actor-00042")
    assert at > 0 and data.find(b"actor-00042", at + 1) == -1
    data[at + 10] ^= 0x01  # "actor-00042" -> "actor-00043"
    write_raw(db_path, bytes(data))
    assert cli_main(["audit", "verify", "--db", str(db_path)]) == 1
    out = capsys.readouterr().out
    assert "BROKEN at row 42" in out
    res = verify_chain(db_path)
    assert res.first_broken == 42 and res.reason == "row content does not match its hash"


@pytest.mark.asyncio
async def test_deleted_and_reordered_rows_are_detected(db_path: Path, kek: KekSource) -> None:
    await _fill(db_path, kek, 10)
    conn = sqlite3.connect(db_path)
    conn.execute("DELETE FROM audit WHERE seq = 5")
    conn.commit()
    conn.close()
    res = verify_chain(db_path)
    assert res.first_broken == 5 and "missing" in res.reason


@pytest.mark.asyncio
async def test_details_are_scalar_and_purge_keeps_chain(db_path: Path, kek: KekSource) -> None:
    async with Store(db_path, kek) as st:
        async with st.transaction() as tx:
            with pytest.raises(InvalidInputError):
                await st.audit(tx, actor="x", action="enrol", detail={"emb": b"\x00" * 16})
        for i in range(6):
            async with st.transaction() as tx:
                await st.audit(tx, actor="op", action="export", detail={"i": i})
        cutoff = (await st.db.fetchone("SELECT at FROM audit WHERE seq = 4"))[0]
        async with st.transaction() as tx:
            assert await purge_before(tx, cutoff) == 3
        async with st.transaction() as tx:
            rec = await st.audit(tx, actor="op", action="export")
        assert rec.seq == 7
        res = await st.verify_audit()
        assert res.ok and res.rows == 4
