"""The link's connection state: an Enum guarded by a lock, each change logged and published once.

:class:`StateTracker` is owned by :class:`~facegate.runtime.mqtt.link.MqttLink`.
It logs the first failure (``mqtt.link.state`` -> ``reconnecting``, warning)
and the recovery (``connected`` with ``attempts`` and ``down_s``), never each
retry, and publishes a :class:`~facegate.runtime.events.ComponentStateChanged`
per change when it has a bus.
"""

from __future__ import annotations

import asyncio
import enum
from typing import Any

import structlog

from ..bus import EventBus
from ..clock import Clock
from ..state import StateChange, StateKeeper

_log = structlog.get_logger("facegate.mqtt")


class LinkState(enum.StrEnum):
    """Connection state of the link (changes are logged and published once)."""

    IDLE = "idle"
    """Constructed, ``run()`` not started."""
    CONNECTING = "connecting"
    """First connection attempt in progress."""
    CONNECTED = "connected"
    """Birth published and subscriptions active: publishing works."""
    RECONNECTING = "reconnecting"
    """A connect failed or the connection was lost; retrying with backoff."""
    CLOSING = "closing"
    """Shutting down: publishing ``offline`` and disconnecting."""
    CLOSED = "closed"
    """``run()`` has returned or been cancelled."""


class StateTracker:
    """Current :class:`LinkState` (a :class:`~facegate.runtime.state.StateKeeper`), the failed
    attempts of this outage and when it began."""

    def __init__(self, component: str, *, clock: Clock, bus: EventBus | None) -> None:
        self.component = component
        self.failures = 0
        """Failed attempts since the last successful connect."""
        self.connected = asyncio.Event()
        """Set exactly while the state is CONNECTED."""
        self._clock = clock
        self._down_since: float | None = None
        self._keeper = StateKeeper(
            LinkState.IDLE, component=component, log=self._log_change, bus=bus, clock=clock
        )

    @property
    def state(self) -> LinkState:
        """The current state."""
        return self._keeper.state

    async def failed(self, detail: str) -> None:
        """Count a failed or lost connection; the first of an outage becomes RECONNECTING."""
        self.failures += 1
        if self.state is not LinkState.RECONNECTING:
            self._down_since = self._clock.monotonic()
            await self.set(LinkState.RECONNECTING, detail)

    async def set(self, new: LinkState, detail: str = "") -> None:
        """Change state (no-op when unchanged): log once, publish on the bus."""
        if self._keeper.set(new, detail) is None:
            return
        if new is LinkState.CONNECTED:
            self.connected.set()
            self.failures = 0
        else:
            self.connected.clear()

    def _log_change(self, change: StateChange[LinkState]) -> None:
        old, new = change.old, change.new
        fields: dict[str, Any] = {"component": self.component, "old": old.value, "new": new.value}
        if change.detail:
            fields["detail"] = change.detail
        if new is LinkState.RECONNECTING:
            _log.warning("mqtt.link.state", **fields)
        elif new is LinkState.CONNECTED and old is LinkState.RECONNECTING:
            now = self._clock.monotonic()
            down = now - (self._down_since if self._down_since is not None else now)
            _log.info("mqtt.link.state", attempts=self.failures, down_s=round(down, 3), **fields)
        else:
            _log.info("mqtt.link.state", **fields)
