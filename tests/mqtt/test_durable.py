"""Durable events through the outbox against a real Mosquitto: kills, partitions, order, privacy."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from facegate.handlers.commands import first_error
from facegate.runtime.bus import EventBus
from facegate.runtime.clock import SystemClock
from facegate.runtime.events import (
    DoorEvent,
    DoorKind,
    PrivacyEvent,
    PrivacyKind,
    SecurityEvent,
    SecurityKind,
)
from facegate.runtime.mqtt import MqttLink
from facegate.runtime.mqtt.codec import EventCodec
from facegate.runtime.mqtt.durable import DurableEvents
from facegate.storage import Store

from ..fixtures.brokers import MosquittoBroker
from .durable_util import PersistentSubscriber, access, kek_source, open_store, running
from .util import load, observe, until

pytestmark = pytest.mark.mosquitto


class Rig:
    def __init__(self, link: MqttLink, events: DurableEvents, bus: EventBus, store: Store) -> None:
        self.link, self.events, self.bus, self.store = link, events, bus, store


@pytest_asyncio.fixture
async def rig(
    tmp_path: Path, mosquitto: MosquittoBroker, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Rig]:
    clock = SystemClock()
    bus = EventBus()
    loaded = load(tmp_path, mosquitto, protocol="5")
    link = MqttLink.from_config(loaded, clock=clock, bus=bus)
    async with open_store(tmp_path / "dev.db", kek_source(monkeypatch), clock=clock) as store:
        events = DurableEvents(
            bus=bus,
            outbox=store.outbox,
            link=link,
            codec=EventCodec("gate-1"),
            base_topic=link.topics.base,
            clock=clock,
        )
        async with link, asyncio.TaskGroup() as tg:
            task = tg.create_task(events.run(), name="test.events")
            await asyncio.wait_for(events.wait_subscribed(), 5)
            await asyncio.wait_for(link.wait_connected(), 10)
            try:
                yield Rig(link, events, bus, store)
            finally:
                task.cancel()


@pytest.mark.asyncio
async def test_broker_killed_20_times_mid_stream_loses_nothing(
    rig: Rig, mosquitto: MosquittoBroker
) -> None:
    sub = PersistentSubscriber(mosquitto, "facegate/v1/gate-1/event/access")
    total = 0
    async with running(sub):
        for _cycle in range(20):
            for _ in range(15):
                total += 1
                rig.bus.publish(access(total))
                await asyncio.sleep(0.002)
            await mosquitto.akill()
            for _ in range(5):  # events while the broker is down go to the outbox
                total += 1
                rig.bus.publish(access(total))
            await mosquitto.astart()
        try:
            await sub.wait_unique(total, within=40)
        except TimeoutError:
            missing = sorted({f"ev-{n:06d}" for n in range(1, total + 1)} - set(sub.ids))
            pytest.fail(
                f"{len(missing)} of {total} never arrived (backlog {rig.events.backlog}, "
                f"stats {rig.events.stats}, link {rig.link.state}): {missing[:10]}"
            )
    expected = {f"ev-{n:06d}" for n in range(1, total + 1)}
    assert set(sub.ids) == expected
    await until(lambda: rig.events.backlog == 0)
    first_seen = list(dict.fromkeys(sub.ids))
    assert first_seen == sorted(first_seen), "first arrivals must keep publish order"


@pytest.mark.asyncio
async def test_partition_backlog_drains_in_order(rig: Rig, mosquitto: MosquittoBroker) -> None:
    async with observe(mosquitto, "facegate/v1/gate-1/event/#", client_id="obs") as obs:
        mosquitto.pause()
        try:
            for n in range(1, 201):
                rig.bus.publish(access(n))
            await until(lambda: rig.events.stats.appended == 200)
            assert rig.events.backlog >= 150  # nothing acknowledged while the broker is frozen
        finally:
            mosquitto.resume()
        await until(lambda: rig.events.backlog == 0, within=30)
        await obs.wait_for(lambda s: s.json().get("event_id") == "ev-000200", within=15)
    ids = [m.json()["event_id"] for m in obs.messages]
    first_seen = list(dict.fromkeys(ids))
    assert first_seen == [f"ev-{n:06d}" for n in range(1, 201)]


@pytest.mark.asyncio
async def test_payloads_are_schema_valid_and_private(rig: Rig, mosquitto: MosquittoBroker) -> None:
    async with observe(mosquitto, "facegate/v1/gate-1/event/#", client_id="obs2") as obs:
        rig.bus.publish(access(1))
        rig.bus.publish(DoorEvent(at=1.0, kind=DoorKind.UNLOCKED, cause="decision:ev-000001"))
        rig.bus.publish(SecurityEvent(at=2.0, kind=SecurityKind.TAMPER, detail="case opened", source="gpio"))
        rig.bus.publish(
            PrivacyEvent(at=3.0, kind=PrivacyKind.ERASURE, subject_id="s-1", counts=(("templates", 3),))
        )
        await obs.wait_for(lambda s: s.topic.endswith("event/privacy"))
    assert {m.topic.rsplit("/", 1)[1] for m in obs.messages} == {"access", "door", "security", "privacy"}
    for m in obs.messages:
        body = m.json()
        schema = "event_" + m.topic.rsplit("/", 1)[1]
        assert first_error(schema, body) is None, (schema, first_error(schema, body))
        text = m.payload.decode()
        for forbidden in ("embedding", "image", "name", "jpeg", "vector"):
            assert forbidden not in json.dumps(list(_keys(body))), forbidden
        assert "Family1" not in text
    access_body = next(m.json() for m in obs.messages if m.topic.endswith("access"))
    assert access_body["subject_id"] == "s-1" and "name" not in access_body


def _keys(obj: object) -> AsyncIterator[str] | list[str]:
    out: list[str] = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k != "model_id" and not (k == "name" and isinstance(v, str) and v in {"sharpness", "ir"}):
                out.append(k)
            out.extend(_keys(v))
    elif isinstance(obj, list):
        for v in obj:
            out.extend(_keys(v))
    return out
