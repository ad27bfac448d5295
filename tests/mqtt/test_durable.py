"""Durable events through the outbox against a real Mosquitto: kills, partitions, order, privacy."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from facegate.handlers.commands import first_error
from facegate.handlers.reporting.codec import EventCodec
from facegate.handlers.reporting.durable import DurableEvents
from facegate.policy import receipts
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
from facegate.runtime.mqtt import LinkState, MqttLink
from facegate.storage import Store

from ..fixtures.brokers import MosquittoBroker, require_mosquitto
from .durable_util import PersistentSubscriber, access, kek_source, open_store, running
from .util import in_flight, load, observe, stopped, until

pytestmark = pytest.mark.mosquitto


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[MosquittoBroker]:
    """Mosquitto with a deep per-client queue: a redelivery burst must not hit the 1000 default.

    (``max_queued_messages`` drops QoS 1 messages for a slow or offline
    subscriber beyond the limit, silently; docs/deployment.md sizes it.)
    """
    broker = MosquittoBroker(
        require_mosquitto(), tmp_path / "mosquitto", extra="max_queued_messages 100000\n"
    )
    broker.start()
    try:
        yield broker
    finally:
        broker.close()


KILLS = 20
PER_TICK, TICK_S = 5, 0.005
"""Up to ~1000 access events/s: fast enough that random kills often land between a
PUBACK and the broker's save (with the window off, 3 of 4 runs lost events)."""
WINDOW_S = 5.0
"""The default ``mqtt.redeliver_window_s``."""


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
            redeliver_window_s=WINDOW_S,
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
@pytest.mark.timeout(400)  # the catch-up wait may run long on a loaded machine while ids still arrive
async def test_broker_sigkilled_20_times_at_random_while_streaming_loses_nothing(
    rig: Rig, mosquitto: MosquittoBroker
) -> None:
    """The issue's test: stream events, SIGKILL + restart Mosquitto 20 times at random moments.

    No freezing: kills land wherever they land, including just after the
    broker acknowledged messages it had not yet saved or forwarded (Mosquitto
    2.0 PUBACKs first, autosaves after the loop iteration). The device covers
    that by republishing its redelivery window after each reconnect. A
    consumer with a persistent session (clean_session false, QoS 1) must see
    every event id after de-duplication, with first arrivals in publish order
    per topic (access and door events are interleaved on two topics).
    """
    seed = random.SystemRandom().randrange(2**32)
    rng = random.Random(seed)
    sub = PersistentSubscriber(mosquitto, "facegate/v1/gate-1/event/#")
    total = 0
    doors = 0
    streaming = True

    async def stream() -> None:
        nonlocal total, doors
        while streaming:
            for _ in range(PER_TICK):
                total += 1
                rig.bus.publish(access(total))
                if total % 4 == 0:
                    doors += 1
                    cause = f"command:{doors:06d}"
                    rig.bus.publish(DoorEvent(at=1.0, kind=DoorKind.UNLOCKED, cause=cause))
            await asyncio.sleep(TICK_S)

    async with running(sub):
        async with asyncio.TaskGroup() as tg:
            tg.create_task(stream(), name="test.stream")
            try:
                for kill in range(KILLS):
                    # The device is back (its reconnect is under test too), then a random moment.
                    await until(lambda k=kill: _online(rig, k + 1), within=20)
                    await asyncio.sleep(rng.uniform(0.02, 0.6))
                    await mosquitto.akill()
                    await asyncio.sleep(rng.uniform(0.0, 0.2))
                    await mosquitto.astart()
            finally:
                streaming = False
        await _caught_up(rig, sub, total, f"seed {seed}")
        try:
            await sub.wait_until(lambda: _door_causes(sub) >= set(range(1, doors + 1)), within=30)
        except TimeoutError:
            missing = sorted(set(range(1, doors + 1)) - _door_causes(sub))
            pytest.fail(f"{len(missing)} of {doors} door events never arrived (seed {seed}): {missing[:10]}")
        await until(lambda: rig.events.backlog == 0, within=30)
    assert set(sub.ids) >= {f"ev-{n:06d}" for n in range(1, total + 1)}, f"seed {seed}"
    access_first = list(dict.fromkeys(b["event_id"] for t, b in sub.messages if t.endswith("/access")))
    assert access_first == [f"ev-{n:06d}" for n in range(1, total + 1)], f"access order (seed {seed})"
    door_first = list(dict.fromkeys(str(b["cause"]) for t, b in sub.messages if t.endswith("/door")))
    assert door_first == [f"command:{n:06d}" for n in range(1, doors + 1)], f"door order (seed {seed})"
    assert rig.link.connection_number >= KILLS + 1
    # Each reconnect republished what was acknowledged just before the kill.
    assert rig.events.stats.redelivered > 0


def _online(rig: Rig, connections: int) -> bool:
    return rig.link.connection_number >= connections and rig.link.state is LinkState.CONNECTED


def _settled(rig: Rig, appended: int) -> bool:
    """Every event so far is bound and acknowledged, and no publish awaits an acknowledgement."""
    return rig.events.stats.appended == appended and rig.events.backlog == 0 and in_flight(rig.link) == 0


def _door_causes(sub: PersistentSubscriber) -> set[int]:
    return {int(str(b["cause"]).split(":")[1]) for t, b in sub.messages if t.endswith("/door")}


@pytest.mark.asyncio
async def test_broker_killed_20_times_with_publishes_in_flight_loses_nothing(
    rig: Rig, mosquitto: MosquittoBroker
) -> None:
    """SIGKILL the broker 20 times exactly while publishes are on the wire, unacknowledged.

    The random-kill test above may or may not hit this path; here every cycle
    does: stream 10 events to a live broker (until all are acknowledged), 5 more
    to a frozen one (SIGSTOP, so the device has written them and has no PUBACK),
    then SIGKILL once a publish is in flight, 5 more while it is down (outbox
    only), restart. Each step waits on a condition, never a fixed time, so a
    loaded machine cannot reorder them. The device must resend the
    unacknowledged ones (and its redelivery window covers what the broker
    acknowledged just before it froze).
    """
    sub = PersistentSubscriber(mosquitto, "facegate/v1/gate-1/event/access")
    total = 0
    async with running(sub):
        for cycle in range(20):
            await until(lambda c=cycle: _online(rig, c + 1), within=20)  # publishing again
            for _ in range(10):
                total += 1
                rig.bus.publish(access(total))
                await asyncio.sleep(0.002)
            # All acknowledged, so nothing is in flight that a late PUBACK could still settle.
            await until(lambda n=total: _settled(rig, n), within=60)
            mosquitto.pause()
            await until(lambda: stopped(mosquitto), within=60)
            for _ in range(5):  # on the wire, never acknowledged: the kill lands mid-stream
                total += 1
                rig.bus.publish(access(total))
            await until(lambda n=total: rig.events.stats.appended == n, within=60)  # bound now
            # The drain hands them to the frozen broker's connection, where none can be
            # acknowledged (or, on a machine slow enough for the keepalive to give up first,
            # they have failed already): either way the kill lands with publishes unsettled.
            failures = rig.events.stats.publish_failures
            await until(
                lambda f=failures: in_flight(rig.link) > 0 or rig.events.stats.publish_failures > f,
                within=60,
            )
            await mosquitto.akill()
            for _ in range(5):  # events while the broker is down go to the outbox
                total += 1
                rig.bus.publish(access(total))
            await mosquitto.astart()
            await sub.wait_connects(cycle + 2, within=20)  # the persistent session is back
        await _caught_up(rig, sub, total)
    expected = {f"ev-{n:06d}" for n in range(1, total + 1)}
    assert set(sub.ids) == expected
    assert rig.events.stats.publish_failures >= 20  # every kill interrupted publishes in flight
    await until(lambda: rig.events.backlog == 0)
    first_seen = list(dict.fromkeys(sub.ids))
    assert first_seen == sorted(first_seen), "first arrivals must keep publish order"


async def _caught_up(
    rig: Rig,
    sub: PersistentSubscriber,
    total: int,
    note: str = "",
    *,
    stall_s: float = 40.0,
    limit_s: float = 200.0,
) -> None:
    """Wait until every id arrived. A loaded CI machine drains a large backlog slowly, so the
    wait goes on while ids keep arriving (up to ``limit_s``) and fails after ``stall_s`` without one."""
    loop = asyncio.get_running_loop()
    start, seen = loop.time(), len(set(sub.ids))
    while True:
        try:
            await sub.wait_unique_access(total, within=stall_s)
            return
        except TimeoutError:
            now_seen = len(set(sub.ids))
            if now_seen > seen and loop.time() - start < limit_s:
                seen = now_seen
                continue
        missing = sorted({f"ev-{n:06d}" for n in range(1, total + 1)} - set(sub.ids))
        pytest.fail(
            f"{len(missing)} of {total} never arrived (backlog {rig.events.backlog}, "
            f"stats {rig.events.stats}, link {rig.link.state}) {note}: {missing[:10]}"
        )


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
        # Privacy receipts reach the outbox with the change that caused them (policy
        # layer), not from the bus: a bus PrivacyEvent must not be sent a second time.
        rig.bus.publish(
            PrivacyEvent(at=3.0, kind=PrivacyKind.ERASURE, subject_id="s-9", counts=(("templates", 3),))
        )
        async with rig.store.transaction() as tx:
            await receipts.emit(rig.store, tx, PrivacyKind.ERASURE, subject_id="s-1", counts={"templates": 3})
        kinds = {"access", "door", "security", "privacy"}
        await until(lambda: {m.topic.rsplit("/", 1)[1] for m in obs.messages} >= kinds)
        await until(lambda: rig.events.backlog == 0)
        # A sentinel after the bus PrivacyEvent: the sink takes the bus in order and the outbox
        # publishes in order, so a wrongly appended privacy copy would arrive before it.
        rig.bus.publish(DoorEvent(at=4.0, kind=DoorKind.LOCKED, cause="sentinel"))
        await until(lambda: sum(m.topic.endswith("/door") for m in obs.messages) == 2)
    assert {m.topic.rsplit("/", 1)[1] for m in obs.messages} == {"access", "door", "security", "privacy"}
    for m in obs.messages:
        body = m.json()
        schema = "event_" + m.topic.rsplit("/", 1)[1]
        assert first_error(schema, body) is None, (schema, first_error(schema, body))
        text = m.payload.decode()
        for forbidden in ("embedding", "image", "name", "jpeg", "vector"):
            assert forbidden not in json.dumps(list(_keys(body))), forbidden
        assert "Family1" not in text
    privacy = [m.json() for m in obs.messages if m.topic.endswith("privacy")]
    assert [p["subject_id"] for p in privacy] == ["s-1"]  # the bus copy was not appended
    assert privacy[0]["device_id"] == "gate-1" and privacy[0]["event_id"]
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
