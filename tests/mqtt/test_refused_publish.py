"""Issue 10.1: a publish the broker's ACL refuses is not a delivery (real Mosquitto, MQTT 5)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiomqtt
import pytest
from facegate.handlers.reporting.codec import EventCodec
from facegate.handlers.reporting.durable import DurableEvents
from facegate.runtime.bus import EventBus
from facegate.runtime.clock import SystemClock
from facegate.runtime.events import SecurityEvent, SecurityKind
from facegate.runtime.mqtt import MqttLink
from facegate.runtime.mqtt.refusals import PublishState

from ..fixtures.acl import AclBroker, acl_broker, documented_acl
from .durable_util import access, kek_source, open_store
from .util import load, until

pytestmark = pytest.mark.mosquitto

USERS = {"gate-1": "device-pw", "fleet.reader": "fleet-pw", "ops.alice": "ops-pw"}


@contextlib.asynccontextmanager
async def fleet_reader(broker: AclBroker, seen: list[tuple[str, dict[str, object]]]) -> AsyncIterator[None]:
    async with aiomqtt.Client(
        broker.host, broker.port, username="fleet.reader", password="fleet-pw", identifier="fleet"
    ) as client:
        await client.subscribe("facegate/v1/+/event/#", qos=1)

        async def pump() -> None:
            with contextlib.suppress(aiomqtt.MqttError):
                async for m in client.messages:
                    assert isinstance(m.payload, bytes)
                    seen.append((str(m.topic), json.loads(m.payload)))

        task = asyncio.create_task(pump(), name="test.fleet")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


@pytest.mark.asyncio
async def test_events_refused_by_the_acl_stay_pending_raise_the_alarm_and_arrive_once_allowed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The old docs' advice: %c (client id 'facegate-gate-1') instead of %u: matches no device topic.
    broken = documented_acl().replace("%u", "%c")
    broker = acl_broker(tmp_path, broken, USERS)
    try:
        (tmp_path / "pw").write_text("device-pw")
        loaded = load(
            tmp_path, broker, protocol="5", username="gate-1", password={"file": str(tmp_path / "pw")}
        )
        clock, bus = SystemClock(), EventBus()
        link = MqttLink.from_config(loaded, clock=clock, bus=bus)
        security: list[SecurityEvent] = []
        seen: list[tuple[str, dict[str, object]]] = []

        async def collect() -> None:
            async with bus.subscribe(SecurityEvent, name="test.security") as sub:
                async for ev in sub:
                    security.append(ev)

        async with open_store(tmp_path / "dev.db", kek_source(monkeypatch), clock=clock) as store:
            events = DurableEvents(
                bus=bus,
                outbox=store.outbox,
                link=link,
                codec=EventCodec("gate-1"),
                base_topic=link.topics.base,
                clock=clock,
            )
            async with fleet_reader(broker, seen), link, asyncio.TaskGroup() as tg:
                tasks = [
                    tg.create_task(events.run(), name="test.events"),
                    tg.create_task(collect(), name="test.collect"),
                ]
                await asyncio.wait_for(events.wait_subscribed(), 5)
                await asyncio.wait_for(link.wait_connected(), 10)
                for n in range(1, 21):
                    bus.publish(access(n))
                await until(lambda: link.refusals.state is PublishState.REFUSING, within=20)
                await until(lambda: any(e.kind is SecurityKind.PUBLISH_REFUSED for e in security), 10)
                await until(lambda: events.stats.publish_failures >= 2, within=30)  # retried, still refused
                # Nothing was counted delivered; every row is still pending.
                assert events.stats.published == 0
                assert store.outbox.backlog >= 20
                health = link.health()
                assert health["publish_state"] == "refusing" and health["publish_refused_reason"] == 0x87
                assert health["publish_refused_topic"] in {"status", "event/access"}
                assert "gate-1" not in json.dumps(health)  # no device identifier in telemetry text
                assert not seen
                # The operator fixes the ACL: everything pending arrives, plus the alarm itself.
                broker.set_acl(documented_acl())
                await until(
                    lambda: len({b["event_id"] for t, b in seen if t.endswith("/event/access")}) >= 20, 90
                )
                await until(lambda: any(b.get("kind") == "publish_refused" for _, b in seen), 30)
                await until(lambda: link.refusals.state is PublishState.ACCEPTING, 10)
                await until(lambda: store.outbox.backlog == 0, 30)
                for t in tasks:
                    t.cancel()
    finally:
        broker.close()
