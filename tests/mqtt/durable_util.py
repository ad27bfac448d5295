"""Helpers for the durable-event and command tests: a real store, events, a persistent subscriber."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiomqtt
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
    """An outside consumer with a persistent session that reconnects whenever the broker comes back.

    ``ids`` keeps every event id in arrival order (duplicates included).
    """

    def __init__(self, broker: BrokerHandle, topic: str, *, client_id: str = "consumer") -> None:
        self.broker = broker
        self.topic = topic
        self.client_id = client_id
        self.ids: list[str] = []
        self.connected = asyncio.Event()
        self._changed = asyncio.Event()

    async def run(self) -> None:
        while True:
            try:
                async with aiomqtt.Client(
                    self.broker.host,
                    self.broker.port,
                    identifier=self.client_id,
                    clean_session=False,
                    keepalive=5,
                ) as client:
                    await client.subscribe(self.topic, qos=1)
                    self.connected.set()
                    async for m in client.messages:
                        payload = m.payload if isinstance(m.payload, bytes) else str(m.payload).encode()
                        self.ids.append(json.loads(payload)["event_id"])
                        self._changed.set()
            except aiomqtt.MqttError:
                self.connected.clear()
                await asyncio.sleep(0.05)

    async def wait_unique(self, n: int, within: float) -> None:
        async with asyncio.timeout(within):
            while len(set(self.ids)) < n:
                self._changed.clear()
                await self._changed.wait()


@contextlib.asynccontextmanager
async def running(sub: PersistentSubscriber) -> AsyncIterator[PersistentSubscriber]:
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(sub.run(), name="test.consumer")
        try:
            await asyncio.wait_for(sub.connected.wait(), 10)
            yield sub
        finally:
            task.cancel()
