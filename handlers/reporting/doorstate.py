"""The door's retained state topic ``<base>/door/state`` (Home Assistant's lock, door and fire).

``event/door`` is a stream of facts and is not retained, so a subscriber that
starts later (Home Assistant after a restart) would not know whether the door
is locked. This service keeps one retained JSON document up to date::

    {"lock": "locked" | "unlocked" | "none", "door": "open" | "closed",
     "fire": "normal" | "active" | "latched", "lockdown": false}

It is republished after every (re)connect and on every door event. It holds no
identifier of any person. The composition root passes the door controller's
``health`` snapshot function.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import structlog

from ...runtime.bus import EventBus
from ...runtime.clock import Clock
from ...runtime.events import DoorEvent
from ...runtime.mqtt.errors import MqttPublishError
from ...runtime.mqtt.payloads import encode
from ...runtime.mqtt.topics import DeviceTopics

_log = structlog.get_logger("facegate.mqtt")

DOOR_STATE = "door/state"


class _Link(Protocol):
    @property
    def topics(self) -> DeviceTopics: ...
    @property
    def connection_number(self) -> int: ...
    async def wait_connected(self) -> None: ...
    async def publish_to(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> None: ...


def door_state(health: Mapping[str, Any]) -> dict[str, Any]:
    """The retained document from the door controller's health snapshot."""
    return {
        "lock": str(health.get("relay", "none")),
        "door": str(health.get("door", "closed")),
        "fire": str(health.get("fire", "normal")),
        "lockdown": bool(health.get("lockdown", False)),
    }


class DoorStatePublisher:
    """Service ``mqtt.door_state``: the retained ``door/state`` topic."""

    def __init__(
        self,
        link: _Link,
        door_health: Callable[[], Mapping[str, Any]],
        *,
        bus: EventBus,
        clock: Clock,
        name: str = "mqtt.door_state",
    ) -> None:
        self._link = link
        self._health = door_health
        self._bus = bus
        self._clock = clock
        self._name = name
        self._changed = asyncio.Event()
        self.published: dict[str, Any] | None = None

    @property
    def name(self) -> str:
        return self._name

    @property
    def topic(self) -> str:
        return f"{self._link.topics.base}/{DOOR_STATE}"

    async def run(self) -> None:
        health = self._health
        async with (
            self._bus.subscribe(DoorEvent, name=self._name, maxsize=64) as sub,
            asyncio.TaskGroup() as tg,
        ):
            tg.create_task(self._watch(sub), name=f"{self._name}.events")
            sent_on = 0
            while True:
                await self._link.wait_connected()
                number = self._link.connection_number
                state = door_state(health())
                if number != sent_on or state != self.published:
                    try:
                        await self._link.publish_to(self.topic, encode(state), qos=1, retain=True)
                        self.published, sent_on = state, number
                    except MqttPublishError as exc:
                        _log.debug("mqtt.door_state_retry", detail=str(exc))
                        await self._clock.sleep(1.0)
                        continue
                self._changed.clear()
                try:
                    async with asyncio.timeout(1.0):  # also notices a new connection
                        await self._changed.wait()
                except TimeoutError:
                    pass

    async def _watch(self, sub: Any) -> None:
        async for _ in sub:
            self._changed.set()
