"""Health telemetry: one JSON-ready snapshot of the device's vital signs.

:meth:`HealthMonitor.snapshot` returns plain data (str/int/float/bool/None,
dicts and lists of those) with no personal data: uptime, per-service state
and restart counts, bus queue depths and drop counters, dropped-frame counts
and whatever counters subsystems register with :meth:`HealthMonitor.register`.
The MQTT link publishes it periodically on ``<prefix>/<device>/telemetry``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol

from . import __version__
from .bus import EventBus
from .clock import Clock, utc_iso

Source = Callable[[], Mapping[str, int | float | str | bool | None]]


class TaskStatus(Protocol):
    """One supervised task's status (``facegate.runtime.app.supervisor.ServiceStatus``)."""

    @property
    def restarts(self) -> int: ...

    def as_dict(self) -> dict[str, object]: ...


class TaskStatuses(Protocol):
    """What reports the supervised tasks (``facegate.runtime.app.supervisor.Supervisor``)."""

    def status(self) -> Mapping[str, TaskStatus]: ...


class HealthMonitor:
    """Builds telemetry snapshots from the clock, the bus, the supervisor and registered sources."""

    def __init__(
        self,
        *,
        clock: Clock,
        bus: EventBus,
        supervisor: TaskStatuses | None = None,
        device_id: str = "",
    ) -> None:
        self._clock = clock
        self._bus = bus
        self._supervisor = supervisor
        self._device_id = device_id
        self._started_mono = clock.monotonic()
        self._started_wall = clock.wall()
        self._sources: dict[str, Source] = {}
        self._fields: list[Callable[[], Mapping[str, object]]] = []

    @property
    def started_at(self) -> float:
        """Wall-clock POSIX seconds when the monitor (the device) started."""
        return self._started_wall

    def attach(self, supervisor: TaskStatuses) -> None:
        """Report the services of ``supervisor`` (set once by the Device)."""
        self._supervisor = supervisor

    def register(self, name: str, source: Source) -> None:
        """Add a counter source (e.g. ``camera`` -> ``{"frames_dropped": 3}``).

        A source must return counts and states only, never personal data. A
        source whose mapping has a ``frames_dropped`` key is also summed into
        the snapshot's ``frames_dropped``.
        """
        self._sources[name] = source

    def include(self, fields: Callable[[], Mapping[str, object]]) -> None:
        """Add a component's ``health()`` whose keys are top-level telemetry fields.

        (``LinkMetrics.health``: ``fps``, ``latency_ms``, ``outbox_backlog``,
        ``gallery_size``.) Counts and timings only, never personal data; added
        after the monitor's own keys, in the order included. Unlike a
        source given to :meth:`register`, a failure here fails the snapshot (the
        telemetry tick is skipped and the failure logged).
        """
        self._fields.append(fields)

    def uptime(self) -> float:
        """Seconds since start on the monotonic clock."""
        return max(0.0, self._clock.monotonic() - self._started_mono)

    def snapshot(self) -> dict[str, object]:
        """The current health, JSON-serialisable.

        Keys: ``device_id``, ``version``, ``started_at`` (RFC 3339), ``uptime_s``,
        ``tasks`` ({name: {state, restarts, crashes, last_error, failing}}),
        ``restarts`` (total), ``queues`` (bus.snapshot()), ``bus_published``,
        ``frames_dropped`` ({source: count}, latest-wins queue drops plus
        sources' own counters), ``sources`` ({name: {...}}).
        """
        tasks: dict[str, object] = {}
        restarts = 0
        if self._supervisor is not None:
            for name, status in sorted(self._supervisor.status().items()):
                tasks[name] = status.as_dict()
                restarts += status.restarts
        queues = self._bus.snapshot()
        dropped: dict[str, int] = {
            f"queue:{name}": q["dropped"] for name, q in sorted(queues.items()) if q["dropped"]
        }
        sources: dict[str, object] = {}
        for name, source in sorted(self._sources.items()):
            try:
                values = dict(source())
            except Exception as exc:  # noqa: BLE001  # a broken counter must not break telemetry
                values = {"error": type(exc).__name__}
            sources[name] = values
            frames = values.get("frames_dropped")
            if isinstance(frames, int) and not isinstance(frames, bool):
                dropped[name] = frames
        body: dict[str, object] = {
            "device_id": self._device_id,
            "version": __version__,
            "started_at": utc_iso(self._started_wall),
            "uptime_s": round(self.uptime(), 3),
            "tasks": tasks,
            "restarts": restarts,
            "queues": queues,
            "bus_published": self._bus.published,
            "frames_dropped": dropped,
            "sources": sources,
        }
        for fields in self._fields:
            body.update(fields())
        return body
