"""Device wiring of the licence (old root; constructor-injected parts, trivial to move).

Placed in ``runtime.assembly.FACTORIES`` after ``policy.assembly``. When ``[licence] enabled``:

* component ``licence`` (:class:`LicenceManager`), a resource opened right after the store, so
  the licence is evaluated before recognition loads its gallery;
* recognition gets ``gate = manager.recognition_allowed`` (frames are not analysed and the
  gallery is not loaded without a usable licence);
* the privacy actions get ``licence = manager`` (enrolment refused; ``max_subjects``);
* services ``licence`` (periodic check), ``licence.report`` (retained topic) and, with
  ``seat_service``, ``licence.seat``.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from ...runtime.clock import Clock
from .errors import LicenceRequired
from .manager import LicenceManager
from .report import LicenceReporter
from .seat_client import SeatClient

if TYPE_CHECKING:
    from ...runtime.assembly import AssemblyContext, Parts


def camera_count(ctx: AssemblyContext) -> int:
    """Cameras this device runs (colour, plus IR when configured)."""
    return 1 + (ctx.config.camera.ir is not None)


def build(ctx: AssemblyContext, parts: Parts) -> None:
    cfg = ctx.config.licence
    store: Any = parts.components.get("store")
    if not cfg.enabled or store is None:
        return
    manager = LicenceManager(cfg, store=store, bus=ctx.bus, clock=ctx.clock, cameras=camera_count(ctx))
    # Opened right after the store (before recognition), whatever the factory order.
    at = next((i + 1 for i, r in enumerate(parts.resources) if r is store), len(parts.resources))
    parts.resources.insert(at, manager)
    parts.components["licence"] = manager
    parts.services.append(manager)
    reporter = LicenceReporter(manager, parts.components, clock=ctx.clock)
    parts.services.append(reporter)
    parts.components["licence.report"] = reporter
    if cfg.seat_service:
        seat = SeatClient(manager, parts.components, clock=ctx.clock)
        parts.services.append(seat)
        parts.components["licence.seat"] = seat
    recognition = parts.components.get("recognition")
    if recognition is not None:
        recognition.gate = manager.recognition_allowed  # type: ignore[attr-defined]  # RecognitionHost
    privacy = parts.components.get("privacy")
    if privacy is not None:
        loaded = getattr(recognition, "gallery_loaded", None)
        privacy.licence = EnrolmentGate(manager, loaded, clock=ctx.clock)  # type: ignore[attr-defined]  # PrivacyActions


class EnrolmentGate:
    """The privacy actions' licence check; after a licence arrives, waits for the deferred gallery.

    Without the wait, an enrolment made in the moment between a licence install and the
    gallery load would be stored but not reach the live matcher.
    """

    def __init__(
        self, manager: LicenceManager, gallery_loaded: asyncio.Event | None, *, clock: Clock
    ) -> None:
        self._manager = manager
        self._loaded = gallery_loaded
        self._clock = clock

    async def admit_enrolment(self, subject_id: str | None) -> None:
        await self._manager.admit_enrolment(subject_id)
        if self._loaded is None or self._loaded.is_set():
            return
        waiter = asyncio.create_task(self._loaded.wait(), name="licence.enrol.gallery_wait")
        timer = asyncio.create_task(self._clock.sleep(30.0), name="licence.enrol.gallery_timeout")
        try:
            await asyncio.wait({waiter, timer}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
            timer.cancel()
        if not self._loaded.is_set():
            raise LicenceRequired("the gallery is still loading after the licence arrived", code="not_ready")
