"""Periodic telemetry on ``<prefix>/<device_id>/telemetry``.

The snapshot comes from any ``Callable[[], Mapping[str, object]]`` (in the
device: ``HealthMonitor.snapshot``), so this module does not depend on how
health is computed. Telemetry is best-effort: QoS 0, not retained, and a tick
that finds the link offline is skipped rather than queued.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol

import structlog

from ..clock import Clock
from . import payloads
from .errors import MqttPublishError
from .payloads import Identity
from .topics import TELEMETRY

SnapshotProvider = Callable[[], Mapping[str, object]]


class TelemetryLink(Protocol):
    """What the publisher needs from :class:`~.link.MqttLink` (which owns the publisher)."""

    @property
    def identity(self) -> Identity: ...

    @property
    def endpoint(self) -> str: ...

    async def wait_connected(self) -> None: ...

    async def publish(self, suffix: str, payload: bytes, *, qos: int = ..., retain: bool = ...) -> None: ...

_log = structlog.get_logger("facegate.mqtt")


class TelemetryPublisher:
    """Publishes one redacted snapshot per interval while the link is connected.

    The first tick goes out as soon as the link is connected, then every
    ``interval_s`` on the injected clock. A failing provider is logged once per
    streak of failures and never stops the loop.
    """

    def __init__(
        self,
        link: TelemetryLink,
        snapshot: SnapshotProvider,
        *,
        interval_s: float,
        clock: Clock,
        name: str = "mqtt.telemetry",
    ) -> None:
        if interval_s <= 0:
            raise ValueError("interval_s must be > 0")
        self._link = link
        self._snapshot = snapshot
        self._interval = interval_s
        self._clock = clock
        self._name = name
        self.sent = 0
        """Telemetry messages the broker accepted."""

    @property
    def name(self) -> str:
        return self._name

    @property
    def interval_s(self) -> float:
        """Seconds between ticks; settable at run time (``cmd/set telemetry_interval_s``)."""
        return self._interval

    @interval_s.setter
    def interval_s(self, value: float) -> None:
        if isinstance(value, bool) or not isinstance(value, int | float) or not 1 <= value <= 3600:
            raise ValueError("telemetry_interval_s must be a number of seconds in [1, 3600]")
        self._interval = float(value)

    async def run(self) -> None:
        """Tick until cancelled."""
        seq = 0
        provider_failing = False
        while True:
            await self._link.wait_connected()
            seq += 1
            try:
                snapshot = self._snapshot()
            except Exception as exc:  # noqa: BLE001  # a health bug must not stop presence
                if not provider_failing:
                    _log.warning("mqtt.telemetry.snapshot_failed", error_type=type(exc).__name__)
                provider_failing = True
            else:
                provider_failing = False
                body = payloads.telemetry(
                    self._link.identity, {**snapshot, "endpoint": self._link.endpoint},
                    at=self._clock.wall(), seq=seq,
                )
                try:
                    await self._link.publish(TELEMETRY, body, qos=0)
                    self.sent += 1
                except MqttPublishError as exc:
                    _log.debug("mqtt.telemetry.skipped", detail=str(exc))
            await self._clock.sleep(self._interval)
