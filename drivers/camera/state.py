"""Camera state: an Enum guarded by a lock, published and logged once per change."""

from __future__ import annotations

import asyncio
import enum

import structlog

from ...runtime.bus import EventBus
from ...runtime.clock import Clock
from ...runtime.events import ComponentStateChanged

_log = structlog.get_logger("facegate.camera")


class CameraState(enum.StrEnum):
    """Lifecycle of one camera.

    ``connecting`` (first open) -> ``streaming`` -> ``reconnecting`` (source
    failed or stalled; retried with backoff, published once however many
    retries it takes) -> ``streaming`` ... -> ``stopped``. ``ended`` means a
    non-looping video file reached its end: the camera idles until stopped.
    """

    STOPPED = "stopped"
    CONNECTING = "connecting"
    STREAMING = "streaming"
    RECONNECTING = "reconnecting"
    ENDED = "ended"


class StateKeeper:
    """Holds a component's :class:`CameraState`; each real change is published once.

    ``detail`` must be safe to publish: the source label (URL credentials
    masked), an error class name or a frame size, never pixel data.
    """

    def __init__(self, component: str, bus: EventBus, clock: Clock) -> None:
        self.component = component
        self._bus = bus
        self._clock = clock
        self._lock = asyncio.Lock()
        self._state = CameraState.STOPPED
        self.changes = 0

    @property
    def state(self) -> CameraState:
        """The current state (read without the lock: a single reference read)."""
        return self._state

    async def set(self, state: CameraState, detail: str = "") -> bool:
        """Move to ``state``; publish and log only if it differs. Returns True if it changed."""
        async with self._lock:
            if state is self._state:
                return False
            previous, self._state = self._state, state
            self.changes += 1
        _log.info(
            "camera.state",
            component=self.component,
            state=state.value,
            previous=previous.value,
            detail=detail,
        )
        self._bus.publish(
            ComponentStateChanged(
                at=self._clock.wall(), component=self.component, state=state.value, detail=detail
            )
        )
        return True
