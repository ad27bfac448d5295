"""Issue 10.4: with ``events.include_names`` no display name is stored anywhere, and erasure
removes the subject from every delivered and pending outbox row (real store, Mosquitto)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from ..fixtures.brokers import MosquittoBroker
from ..mqtt.durable_util import PersistentSubscriber, access, running
from ..mqtt.test_names import ACCESS, NAME, Rig, rig
from ..mqtt.util import until

__all__ = ["rig"]  # the fixture (parametrised names on/off) is re-used

pytestmark = pytest.mark.mosquitto


def _on_disk(db: Path) -> bytes:
    """Every byte of the database, the key vault and their WAL/SHM files."""
    out = b""
    for path in sorted(db.parent.iterdir()):
        if path.name.startswith(db.stem) and path.is_file():
            out += path.read_bytes()
    return out


@pytest.mark.asyncio
@pytest.mark.parametrize("rig", [True], ids=["names_on"], indirect=True)  # names off has nothing to check
async def test_names_are_added_at_publish_time_and_erasure_scrubs_the_outbox(
    rig: Rig, mosquitto: MosquittoBroker
) -> None:
    db = rig.store.db.path
    sub = PersistentSubscriber(mosquitto, ACCESS, client_id="rest-sub")  # survives the broker stop
    async with running(sub):
        await _scenario(rig, mosquitto, sub, db)


async def _scenario(rig: Rig, mosquitto: MosquittoBroker, sub: PersistentSubscriber, db: Path) -> None:
    for n in range(1, 6):
        rig.bus.publish(replace(access(n), subject_id="emp-7"))
    await sub.wait_unique(5, within=20)
    named = [b for _, b in sub.messages]
    assert all(b.get("name") == NAME for b in named), named  # consumers still get the name
    events = rig.parts.events
    assert events is not None
    await until(lambda: events.backlog == 0, within=20)
    # Five more while the broker is down: they stay pending in the outbox.
    await mosquitto.astop()
    for n in range(6, 11):
        rig.bus.publish(replace(access(n), subject_id="emp-7"))
    await until(lambda: events.backlog >= 5, within=20)
    rows = await rig.store.db.fetchall("SELECT payload, delivered_at FROM outbox")
    assert any(d is None for _, d in rows) and any(d is not None for _, d in rows)
    await rig.store.db.fetchall("PRAGMA wal_checkpoint(PASSIVE)")
    assert NAME.encode() not in _on_disk(db)  # never at rest: not in the DB, the vault, the WAL
    assert not [p for p, _ in rows if "name" in json.loads(p)]

    await rig.policy.erase_subject("emp-7", actor="admin")
    rows = await rig.store.db.fetchall("SELECT topic, payload, delivered_at FROM outbox")
    with_id = [(t, json.loads(p)) for t, p, _ in rows if b"emp-7" in bytes(p)]
    # Only the erasure receipt still names the subject (consumers need it to erase their copies).
    assert [b.get("kind") for _, b in with_id] == ["erasure"], with_id
    access_rows = [json.loads(p) for t, p, _ in rows if str(t).endswith("event/access")]
    assert len(access_rows) == 10 and all(b["subject_id"] is None for b in access_rows)
    assert NAME.encode() not in _on_disk(db)

    # The pending rows are still delivered, without the person.
    await mosquitto.astart()
    await sub.wait_unique(10, within=60)
    late = [b for _, b in sub.messages if str(b["event_id"]) >= "ev-000006"]
    assert late and all(b["subject_id"] is None and "name" not in b for b in late), late
