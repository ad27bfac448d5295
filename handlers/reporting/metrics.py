"""Telemetry contract fields: fps, per-stage latency, queue depths, outbox backlog, gallery size, uptime.

:class:`LinkMetrics` (Service ``mqtt.metrics``) counts camera frames per
source from the bus (FrameCaptured sequence numbers, so a slow reader misses
nothing) and keeps a moving average of each recognition stage's latency from
AccessDecisions. :meth:`LinkMetrics.health` gives the contract's top-level
keys, which the device's ``HealthMonitor`` includes in every snapshot.
"""

from __future__ import annotations

from typing import Protocol

from ...runtime.bus import EventBus
from ...runtime.clock import Clock
from ...runtime.events import AccessDecision, FrameCaptured

_ALPHA = 0.2


class Backlog(Protocol):
    """What the metrics read from the outbox (``facegate.storage.outbox.Outbox``)."""

    @property
    def backlog(self) -> int: ...


class LinkMetrics:
    """Frame rates and stage latencies for telemetry (counts and timings only)."""

    def __init__(
        self, bus: EventBus, clock: Clock, *, outbox: Backlog | None = None, name: str = "mqtt.metrics"
    ) -> None:
        self._bus = bus
        self._clock = clock
        self._name = name
        self._frames: dict[str, tuple[float, int]] = {}
        self._fps: dict[str, float] = {}
        self.latency_ms: dict[str, float] = {}
        self.gallery_size: int | None = None
        self._outbox = outbox

    @property
    def name(self) -> str:
        return self._name

    def on_access(self, ev: AccessDecision) -> None:
        """Fold one decision's stage latencies into the moving averages."""
        self.gallery_size = ev.gallery_size
        for stage, ms in (*ev.latency_ms, ("decision", ev.decision_ms)):
            old = self.latency_ms.get(stage)
            self.latency_ms[stage] = ms if old is None else old + _ALPHA * (ms - old)

    def on_frame(self, ev: FrameCaptured) -> None:
        now = self._clock.monotonic()
        start = self._frames.get(ev.source)
        if start is None:
            self._frames[ev.source] = (now, ev.seq)
            return
        t0, s0 = start
        if now - t0 >= 1.0:
            self._fps[ev.source] = (ev.seq - s0) / (now - t0)
            self._frames[ev.source] = (now, ev.seq)

    @property
    def fps(self) -> dict[str, float]:
        return {k: round(v, 2) for k, v in self._fps.items()}

    async def run(self) -> None:
        async with self._bus.subscribe(FrameCaptured, name=self._name, maxsize=64) as sub:
            async for ev in sub:
                self.on_frame(ev)

    def health(self) -> dict[str, object]:
        """The telemetry contract's top-level fields: fps, latency_ms, outbox_backlog, gallery_size."""
        return {
            "fps": self.fps,
            "latency_ms": {k: round(v, 2) for k, v in sorted(self.latency_ms.items())},
            "outbox_backlog": self._outbox.backlog if self._outbox is not None else 0,
            "gallery_size": self.gallery_size,
        }
