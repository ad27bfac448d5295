"""Outbox: order, delivery after ack, bound policy, purge, atomicity with the causing change."""

from __future__ import annotations

from pathlib import Path

import pytest
from facegate.runtime.clock import ManualClock
from facegate.storage import EventClass, KekSource, Store
from facegate.storage.errors import InvalidInputError, OutboxFullError

TOPIC = "facegate/v1/gate-1/event/access"


@pytest.mark.asyncio
async def test_order_and_delivery_after_ack(store: Store) -> None:
    ids = []
    for i in range(25):
        topic = TOPIC if i % 2 else "facegate/v1/gate-1/event/door"
        rec = await store.outbox.append(topic, f'{{"n":{i}}}'.encode(), klass=EventClass.ACCESS)
        assert rec is not None
        ids.append(rec.event_id)
    assert ids == sorted(ids)  # UUIDv7: time-ordered
    assert store.outbox.backlog == 25
    page = await store.outbox.pending(limit=10)
    assert [r.payload for r in page] == [f'{{"n":{i}}}'.encode() for i in range(10)]
    nxt = await store.outbox.pending(limit=10, after_seq=page[-1].seq)
    assert nxt[0].payload == b'{"n":10}'
    # Only acknowledged ids are marked; the rest is resent in the same order.
    assert await store.outbox.mark_delivered([r.event_id for r in page[:5]]) == 5
    assert await store.outbox.mark_delivered([page[0].event_id]) == 0  # idempotent
    again = await store.outbox.pending(limit=100)
    assert [r.event_id for r in again] == ids[5:]
    assert store.outbox.backlog == 20
    with pytest.raises(InvalidInputError):
        await store.outbox.append("bad/#", b"x", klass=EventClass.ACCESS)


@pytest.mark.asyncio
async def test_survives_reopen(db_path: Path, kek: KekSource) -> None:
    async with Store(db_path, kek) as st:
        for i in range(5):
            await st.outbox.append(TOPIC, bytes([i]), klass=EventClass.SECURITY)
        first = await st.outbox.pending(limit=2)
        await st.outbox.mark_delivered([r.event_id for r in first])
    async with Store(db_path, kek) as st:
        assert st.outbox.backlog == 3
        assert [r.payload for r in await st.outbox.pending()] == [b"\x02", b"\x03", b"\x04"]


@pytest.mark.asyncio
async def test_bound_drops_telemetry_oldest_first_never_critical(db_path: Path, kek: KekSource) -> None:
    async with Store(db_path, kek, outbox_max_pending=4) as st:
        ob = st.outbox
        await ob.append("t/telemetry", b"t1", klass=EventClass.TELEMETRY)
        await ob.append(TOPIC, b"a1", klass=EventClass.ACCESS)
        await ob.append("t/telemetry", b"t2", klass=EventClass.TELEMETRY)
        await ob.append(TOPIC, b"a2", klass=EventClass.ACCESS)
        # Full: a critical event evicts the oldest telemetry row.
        await ob.append(TOPIC, b"a3", klass=EventClass.PRIVACY)
        assert [r.payload for r in await ob.pending()] == [b"a1", b"t2", b"a2", b"a3"]
        # Full: new telemetry evicts older telemetry.
        await ob.append("t/telemetry", b"t3", klass=EventClass.TELEMETRY)
        assert [r.payload for r in await ob.pending()] == [b"a1", b"a2", b"a3", b"t3"]
        await ob.append(TOPIC, b"a4", klass=EventClass.SECURITY)
        # Full of critical events: telemetry is dropped (counted), critical is refused loudly.
        assert await ob.append("t/telemetry", b"t4", klass=EventClass.TELEMETRY) is None
        with pytest.raises(OutboxFullError, match="access event refused"):
            await ob.append(TOPIC, b"a5", klass=EventClass.ACCESS)
        assert [r.payload for r in await ob.pending()] == [b"a1", b"a2", b"a3", b"a4"]
        assert ob.dropped_telemetry == 4  # t1, t2, t3 evicted; t4 never stored
        assert await st.kv.get("outbox.dropped_telemetry") == "4"


@pytest.mark.asyncio
async def test_purge_after_retention(db_path: Path, kek: KekSource) -> None:
    clock = ManualClock()
    async with Store(db_path, kek, clock=clock) as st:
        recs = [await st.outbox.append(TOPIC, b"x", klass=EventClass.ACCESS) for _ in range(4)]
        await st.outbox.mark_delivered([r.event_id for r in recs[:3] if r])
        await clock.advance(3 * 86400)
        assert await st.outbox.purge_delivered(7 * 86400) == 0
        await clock.advance(5 * 86400)
        assert await st.outbox.purge_delivered(7 * 86400) == 3
        assert st.outbox.backlog == 1


@pytest.mark.asyncio
async def test_state_change_outbox_and_audit_commit_together(store: Store) -> None:
    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        async with store.transaction() as tx:
            await tx.execute(
                "INSERT INTO consents(consent_id, subject_id, kind, purpose, state, method, "
                "notice_version, actor, evidence_digest, changed_at) "
                "VALUES ('c1', 's1', 'biometric', 'access_control', 'active', 'kiosk', 'v1', 'op', 'h', ?)",
                (tx.at,),
            )
            await store.outbox.append_in(tx, "p/privacy", b"{}", klass=EventClass.PRIVACY)
            await store.audit(tx, actor="op", action="consent_change", subject_id="s1")
            raise Boom
    assert await store.db.fetchall("SELECT * FROM consents") == []
    assert await store.outbox.pending() == [] and store.outbox.backlog == 0
    assert await store.db.fetchall("SELECT * FROM audit") == []
    async with store.transaction() as tx:
        await store.outbox.append_in(tx, "p/privacy", b"{}", klass=EventClass.PRIVACY)
        await store.audit(tx, actor="op", action="consent_change", subject_id="s1")
    assert store.outbox.backlog == 1 and (await store.verify_audit()).rows == 1
