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

from typing import TYPE_CHECKING, Any

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
        privacy.licence = manager  # type: ignore[attr-defined]  # policy.actions.PrivacyActions
