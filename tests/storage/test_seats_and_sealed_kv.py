"""Storage owns the seat table's schema (versioned) and the sealing of small kv values."""

from __future__ import annotations

import sqlite3
import struct
from pathlib import Path

import pytest
from facegate.storage import Store
from facegate.storage.crypto import new_key
from facegate.storage.errors import SchemaTooNewError, SealedValueError
from facegate.storage.migrations import SEAT_MIGRATIONS, SEAT_SCHEMA_VERSION
from facegate.storage.sealed_kv import SealedKv
from facegate.storage.seats import SeatTable


def _version(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])


def test_seat_table_is_versioned_and_keeps_seats_of_an_unversioned_file(tmp_path: Path) -> None:
    path = tmp_path / "seats.db"
    with sqlite3.connect(path) as conn:  # a seat file written before the schema was versioned
        for sql in SEAT_MIGRATIONS[0][1]:  # the same table, but user_version stays 0
            conn.execute(sql)
        conn.execute("INSERT INTO seats VALUES ('a', 'active', 1.0, 100.0, 1.0, 0)")
    table = SeatTable(path)
    try:
        assert table.rows() == [("a", "active", 100.0)]
        with table.transaction():
            table.upsert_active("b", now=2.0, expires=200.0)
        seat = table.get("b")
        assert seat is not None and seat.state == "active" and seat.lease_expires == 200.0
        assert table.used(now=150.0, grace_s=0.0) == 1
    finally:
        table.close()
    assert _version(path) == SEAT_SCHEMA_VERSION
    reopened = SeatTable(path)
    try:
        assert [r[0] for r in reopened.rows()] == ["a", "b"]
    finally:
        reopened.close()


def test_seat_transaction_rolls_back_on_error(tmp_path: Path) -> None:
    table = SeatTable(tmp_path / "seats.db")
    try:
        with pytest.raises(RuntimeError), table.transaction():
            table.upsert_active("a", now=1.0, expires=9.0)
            raise RuntimeError("boom")
        assert table.get("a") is None
    finally:
        table.close()


def test_a_seat_file_from_a_newer_facegate_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "seats.db"
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {SEAT_SCHEMA_VERSION + 1}")
    with pytest.raises(SchemaTooNewError, match="seat schema version"):
        SeatTable(path)


@pytest.mark.asyncio
async def test_sealed_kv_round_trip_hides_the_value_and_detects_edits(store: Store, db_path: Path) -> None:
    sealed = SealedKv(store.kv, new_key(), b"facegate/test/v1")
    value = struct.pack(">d", 1234567.5)
    assert await sealed.get("t.mark") is None
    await sealed.set("t.mark", value)
    assert await sealed.get("t.mark") == value
    stored = await store.kv.get("t.mark")
    assert stored is not None and value.hex() not in stored  # sealed, not plaintext
    other_key = SealedKv(store.kv, new_key(), b"facegate/test/v1")
    with pytest.raises(SealedValueError, match=r"t\.mark"):
        await other_key.get("t.mark")  # another key does not open it
    flipped = bytearray(bytes.fromhex(stored))
    flipped[-1] ^= 1
    await store.kv.set("t.mark", flipped.hex())
    with pytest.raises(SealedValueError):
        await sealed.get("t.mark")
    await store.kv.set("t.mark", "not hex")
    with pytest.raises(SealedValueError):
        await sealed.get("t.mark")
