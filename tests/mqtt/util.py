"""Helpers for MQTT tests: config files for a broker, and an outside observer client."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiomqtt
from facegate.runtime.config import LoadedConfig, load_config
from facegate.runtime.mqtt import MqttLink

from ..fixtures.brokers import BrokerHandle, MosquittoBroker


def write_config(
    tmp_path: Path,
    broker: BrokerHandle,
    *,
    device_id: str = "gate-1",
    protocol: str = "3.1.1",
    name: str = "device.toml",
    **mqtt: Any,
) -> Path:
    """A firmware config pointing at ``broker`` (as an external broker)."""
    settings: dict[str, Any] = {
        "broker": "external",
        "host": broker.host,
        "port": broker.port,
        "protocol": protocol,
        "keepalive": 5,
        "reconnect_min_s": 0.05,
        "reconnect_max_s": 0.3,
    } | mqtt
    lines = ["[device]", f'id = "{device_id}"', 'site = "Building 7"', "", "[mqtt]"]
    for key, value in settings.items():
        if isinstance(value, dict):
            continue
        lines.append(f"{key} = {json.dumps(value)}")
    for key, value in settings.items():
        if isinstance(value, dict):
            lines.append(f"[mqtt.{key}]")
            lines.extend(f"{k} = {json.dumps(v)}" for k, v in value.items())
    # MQTT tests run a device without a gallery: no store, no recognition models.
    lines += ["", "[storage]", "enabled = false", "", "[recognition]", "enabled = false"]
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


def load(tmp_path: Path, broker: BrokerHandle, **kw: Any) -> LoadedConfig:
    return load_config(write_config(tmp_path, broker, **kw))


@dataclass
class Seen:
    topic: str
    payload: bytes
    retain: bool

    def json(self) -> dict[str, Any]:
        data = json.loads(self.payload)
        assert isinstance(data, dict)
        return data


class Observer:
    """An outside MQTT client recording everything on a filter."""

    def __init__(self, client: aiomqtt.Client, topic_filter: str) -> None:
        self.messages: list[Seen] = []
        self._changed = asyncio.Event()
        self._client, self._filter = client, topic_filter
        self._markers: dict[str, asyncio.Event] = {}

    def _add(self, seen: Seen) -> None:
        if (marker := self._markers.get(seen.topic)) is not None:
            marker.set()
            return
        self.messages.append(seen)
        self._changed.set()

    async def settle(self, within: float = 60.0) -> None:
        """Wait until everything the broker sent this observer so far has arrived (such as the
        retained copies it sends on subscribe), however slow the machine.

        The observer publishes a marker under its own filter and waits for it: a broker keeps
        the order of the messages to one client. The marker is not recorded.
        """
        assert self._filter.endswith("/#"), "a marker topic needs a filter ending in /#"
        topic = f"{self._filter[:-1]}settle-{uuid.uuid4().hex}"
        self._markers[topic] = arrived = asyncio.Event()
        await self._client.publish(topic, b"", qos=1)
        async with asyncio.timeout(within):
            await arrived.wait()

    async def wait_for(
        self, predicate: Callable[[Seen], bool], within: float = 10.0, *, start: int = 0
    ) -> Seen:
        """The first message (from index ``start``) matching ``predicate``."""
        async with asyncio.timeout(within):
            while True:
                for seen in self.messages[start:]:
                    if predicate(seen):
                        return seen
                self._changed.clear()
                await self._changed.wait()


@contextlib.asynccontextmanager
async def observe(
    broker: BrokerHandle, topic_filter: str = "facegate/#", *, client_id: str = "observer"
) -> AsyncIterator[Observer]:
    """Subscribe an outside client to ``topic_filter`` for the duration of the block."""
    async with aiomqtt.Client(broker.host, broker.port, identifier=client_id) as client:
        observer = Observer(client, topic_filter)
        await client.subscribe(topic_filter, qos=1)

        async def pump() -> None:
            # Ends quietly when the broker goes away (tests restart brokers on purpose).
            with contextlib.suppress(aiomqtt.MqttError):
                async for m in client.messages:
                    payload = m.payload if isinstance(m.payload, bytes) else str(m.payload).encode()
                    observer._add(Seen(m.topic.value, payload, bool(m.retain)))

        async with asyncio.TaskGroup() as tg:
            task = tg.create_task(pump(), name="observer.pump")
            try:
                yield observer
            finally:
                task.cancel()


def status_is(state: str, topic: str = "facegate/v1/gate-1/status") -> Callable[[Seen], bool]:
    return lambda s: s.topic == topic and s.json().get("state") == state


async def until(condition: Callable[[], bool], within: float = 10.0) -> None:
    """Wait until ``condition()`` holds (state owned by code under test, with no event to await)."""
    async with asyncio.timeout(within):
        while not condition():  # noqa: ASYNC110  # polling a foreign condition is the point here
            await asyncio.sleep(0.01)


def stopped(broker: MosquittoBroker) -> bool:
    """The broker's SIGSTOP (:meth:`MosquittoBroker.pause`) has taken effect: 'T' in /proc/<pid>/stat.

    Sending the signal does not wait for it; a test that needs the broker silent waits on this.
    """
    assert broker.proc is not None
    stat = Path(f"/proc/{broker.proc.pid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0] == "T"


def in_flight(link: MqttLink) -> int:
    """The link's publishes handed to the client and not yet settled (its ``mqtt`` health field)."""
    count = link.health()["publish_in_flight"]
    assert isinstance(count, int)
    return count
