"""Camera state: a :class:`~facegate.runtime.state.StateKeeper` of :class:`CameraState`."""

from __future__ import annotations

import enum

import structlog

from ...runtime.bus import EventBus
from ...runtime.clock import Clock
from ...runtime.state import StateChange, StateKeeper

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


def _log_change(change: StateChange[CameraState]) -> None:
    _log.info(
        "camera.state",
        component=change.component,
        state=change.new.value,
        previous=change.old.value,
        detail=change.detail,
    )


def camera_states(component: str, bus: EventBus, clock: Clock) -> StateKeeper[CameraState]:
    """The keeper of one camera's state, starting ``stopped``; each real change published once.

    ``detail`` must be safe to publish: the source label (URL credentials
    masked), an error class name or a frame size, never pixel data.
    """
    return StateKeeper(CameraState.STOPPED, component=component, log=_log_change, bus=bus, clock=clock)
