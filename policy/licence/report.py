"""Service ``licence.report``: the retained ``<prefix>/<device>/licence`` topic.

Publishes the current :func:`status_payload` on every state change and after every (re)connect,
QoS 1, retained, so a fleet tool that subscribes later still sees the state. The MQTT link is
looked up when the service starts (component ``mqtt``); without one the state is only logged.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, Protocol

import structlog

from ...runtime.clock import Clock
from .manager import LicenceManager, status_payload
from .state import LicenceStatus

_log = structlog.get_logger("facegate.licence")
TOPIC = "licence"


class _Link(Protocol):
    @property
    def connection_number(self) -> int: ...
    async def wait_connected(self) -> None: ...
    async def publish(self, suffix: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> None: ...


class LicenceReporter:
    """Keeps the retained licence topic equal to the manager's state."""

    def __init__(self, manager: LicenceManager, link: _Link | None, *, clock: Clock) -> None:
        self._manager = manager
        self._link = link
        self._clock = clock
        self._changed = asyncio.Event()
        self.published: dict[str, Any] | None = None
        manager.listeners.append(self._on_change)

    @property
    def name(self) -> str:
        return "licence.report"

    def _on_change(self, status: LicenceStatus) -> None:
        self._changed.set()

    async def run(self) -> None:
        from ...runtime.mqtt.errors import MqttPublishError  # noqa: PLC0415  # the link is optional

        link = self._link
        if link is None:
            _log.warning(
                "licence.report_unavailable", reason="no MQTT link: the licence topic is not published"
            )
            await asyncio.Event().wait()
            return
        sent_on = 0
        self._changed.set()
        while True:
            await link.wait_connected()
            number = link.connection_number
            if self._changed.is_set() or number != sent_on:
                self._changed.clear()
                payload = status_payload(self._manager.status, self._clock.wall())
                try:
                    await link.publish(TOPIC, json.dumps(payload).encode(), qos=1, retain=True)
                    sent_on = number
                    self.published = payload
                except MqttPublishError as exc:
                    self._changed.set()
                    _log.debug("licence.report_retry", detail=str(exc))
            await self._clock.sleep(0.25)
