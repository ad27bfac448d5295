"""Device wiring of the colour (and optional IR) camera: component ``camera``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import create_camera

if TYPE_CHECKING:
    from ...runtime.assembly import AssemblyContext, Parts


def build(ctx: AssemblyContext, parts: Parts) -> None:
    """Add the camera service; its counters feed telemetry (``frames_dropped``)."""
    camera = create_camera(ctx.config.camera, ctx.bus, ctx.clock)
    parts.services.append(camera)
    parts.components["camera"] = camera

    def stats() -> dict[str, int | float | str | bool | None]:
        s = camera.stats()
        return {
            "state": s.state,
            "captured": s.captured,
            "published": s.published,
            "frames_dropped": s.dropped,
            "reconnects": s.reconnects,
        }

    ctx.health.register("camera", stats)
