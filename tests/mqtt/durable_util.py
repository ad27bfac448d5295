"""Helpers for the durable-event and command tests: a real store, events, a persistent subscriber."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import paho.mqtt.client as mqtt
from facegate.runtime.events import AccessDecision, Decision, StageResult
from facegate.storage import KekSource, KekSourceKind, Store
from facegate.storage.crypto import new_key
from facegate.storage.kek import encode_key

from ..fixtures.brokers import BrokerHandle

KEK_ENV = "FACEGATE_MQTT_TEST_KEK"


def kek_source(monkeypatch: object) -> KekSource:
    monkeypatch.setenv(KEK_ENV, encode_key(new_key()))  # type: ignore[attr-defined]
    return KekSource(kind=KekSourceKind.ENV, env=KEK_ENV)


def open_store(path: Path, kek: KekSource, **kw: object) -> Store:
    return Store(path, kek, **kw)  # type: ignore[arg-type]


def access(n: int, at: float = 1_767_225_600.0) -> AccessDecision:
    return AccessDecision(
        at=at,
        event_id=f"ev-{n:06d}",
        decision=Decision.GRANTED if n % 2 else Decision.DENIED,
        reason="match" if n % 2 else "below_threshold",
        subject_id=f"s-{n % 7}",
        score=0.71,
        runner_up=0.2,
        margin=0.51,
        threshold=0.5,
        quality=(StageResult(name="sharpness", passed=True, reason="ok", value=120.0),),
        liveness=(StageResult(name="ir", passed=True, reason="ok"),),
        model_id="sface-2021dec",
        gallery_size=7,
        latency_ms=(("detect", 12.0), ("embed", 20.5)),
        frames=3,
        track_id=n,
        decision_ms=80.0,
    )


class PersistentSubscriber:
    """An outside consumer with a persistent session (clean_session false), reconnecting by itself.

    It is paho in its own thread: paho runs ``on_message`` BEFORE it sends the
    PUBACK, so nothing the broker considers delivered can be lost inside the
    consumer (aiomqtt acknowledges on receipt and drops its queue on disconnect).
    ``ids`` keeps every event id in arrival order (duplicates included), and
    ``messages`` every ``(topic, body)`` likewise.
    """

    def __init__(self, broker: BrokerHandle, topic: str, *, client_id: str = "consumer") -> None:
        self.broker = broker
        self.topic = topic
        self.ids: list[str] = []
        self.messages: list[tuple[str, dict[str, object]]] = []
        self.subscribed = asyncio.Event()
        """Set once the broker acknowledged the first SUBSCRIBE (SUBACK): events published
        from then on reach this consumer."""
        self.connects = 0
        """CONNACKs received so far (a reconnect after a broker kill increments it)."""
        self._changed = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False
        )
        self._client.reconnect_delay_set(0.05, 0.3)
        self._client.on_connect = self._on_connect
        self._client.on_message = self._on_message
        self._client.on_subscribe = self._on_subscribe

    def _on_connect(self, client: mqtt.Client, *_: object) -> None:
        client.subscribe(self.topic, qos=1)
        self._loop.call_soon_threadsafe(self._connected)

    def _connected(self) -> None:
        self.connects += 1
        self._changed.set()

    def _on_subscribe(self, *_: object) -> None:
        self._loop.call_soon_threadsafe(self.subscribed.set)

    def _on_message(self, _c: mqtt.Client, _u: object, m: mqtt.MQTTMessage) -> None:
        body = json.loads(m.payload)
        self._loop.call_soon_threadsafe(self._add, m.topic, body)

    def _add(self, topic: str, body: dict[str, object]) -> None:
        self.ids.append(str(body["event_id"]))
        self.messages.append((topic, body))
        self._changed.set()

    def start(self) -> None:
        self._client.connect_async(self.broker.host, self.broker.port, keepalive=5)
        self._client.loop_start()

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    async def wait_connects(self, n: int, within: float) -> None:
        """Wait until the client has connected ``n`` times in all."""
        async with asyncio.timeout(within):
            while self.connects < n:
                self._changed.clear()
                await self._changed.wait()

    async def wait_unique(self, n: int, within: float) -> None:
        await self.wait_until(lambda: len(set(self.ids)) >= n, within)

    async def wait_unique_access(self, n: int, within: float) -> None:
        """Wait for ``n`` distinct ``ev-*`` ids (the access events of :func:`access`)."""
        await self.wait_until(lambda: len({i for i in self.ids if i.startswith("ev-")}) >= n, within)

    async def wait_until(self, condition: Callable[[], bool], within: float) -> None:
        async with asyncio.timeout(within):
            while not condition():
                self._changed.clear()
                await self._changed.wait()


@contextlib.asynccontextmanager
async def running(sub: PersistentSubscriber) -> AsyncIterator[PersistentSubscriber]:
    sub.start()
    try:
        await asyncio.wait_for(sub.subscribed.wait(), 30)  # SUBACK: events may flow now
        yield sub
    finally:
        await asyncio.to_thread(sub.stop)
