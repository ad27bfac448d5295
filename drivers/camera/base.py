"""What every camera driver shares: the stats record and the service lifecycle."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from types import TracebackType
from typing import Self

from .state import CameraState


@dataclass(frozen=True, slots=True)
class CameraStats:
    """A telemetry snapshot of one camera (counts and sizes only, never pixels).

    ``dropped`` counts frames overwritten in the latest-wins hand-off before the
    event loop took them (the loop was busy). Frames a slow *subscriber* skips
    are counted by the bus subscription instead (``EventBus.snapshot()``).
    """

    state: str
    captured: int
    published: int
    dropped: int
    reconnects: int = 0
    stalls: int = 0
    width: int = 0
    height: int = 0
    last_frame_age_s: float | None = None
    ir_state: str | None = None
    ir_paired: int = 0
    ir_unpaired: int = 0


class CameraService:
    """Base of the camera drivers: a supervised :meth:`run` plus ``async with`` for direct use.

    ``async with camera:`` starts :meth:`run` in a task named after the camera
    and cancels and awaits it on exit, so tests and tools need no supervisor.
    """

    def __init__(self, name: str) -> None:
        self._name = name
        self._task: asyncio.Task[None] | None = None

    @property
    def name(self) -> str:
        """Task and component name (``camera``; the IR camera reports as ``<name>.ir``)."""
        return self._name

    @property
    def state(self) -> CameraState:  # pragma: no cover - overridden
        """Current state of the (colour) camera."""
        raise NotImplementedError

    def stats(self) -> CameraStats:  # pragma: no cover - overridden
        """A telemetry snapshot."""
        raise NotImplementedError

    def health(self) -> dict[str, int | float | str | bool | None]:
        """Counters for telemetry (``frames_dropped`` is summed by the health monitor)."""
        s = self.stats()
        return {
            "state": s.state,
            "captured": s.captured,
            "published": s.published,
            "frames_dropped": s.dropped,
            "reconnects": s.reconnects,
        }

    async def run(self) -> None:  # pragma: no cover - overridden
        """Capture and publish frames until cancelled."""
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        if self._task is not None:
            raise RuntimeError(f"{self._name} is already running")
        self._task = asyncio.create_task(self.run(), name=self._name)
        await asyncio.sleep(0)  # let run() start before the caller proceeds
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # our caller is being cancelled too: never swallow that
