"""Device wiring of recognition: the engine as a resource, the service, the gallery load.

The engine (models verified, converted and opened off the loop) is created
when the device's resources open, after the store (``storage.assembly``), so
a model with the wrong hash stops the device before it serves anyone. The
decrypted gallery is then loaded into the matcher and the store is attached
to it, so later enrolments and erasures reach the matcher at once.
Components: ``recognition`` (:class:`RecognitionHost`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING

import structlog

from .engine import RecognitionEngine
from .service import Authorise, RecognitionService, SnapshotSink

if TYPE_CHECKING:
    from ...runtime.assembly import AssemblyContext, Parts
    from ...storage.store import Store
    from ..access import AntiPassback

_log = structlog.get_logger("facegate.recognition")


class RecognitionHost:
    """Owns the engine for the device's lifetime and runs the recognition service.

    Use as a resource (``async with``) and as a Service (``run``). The service
    is created on the first ``run`` because it needs the loaded engine.
    """

    passback: AntiPassback | None = None
    """Anti-passback state shared with the peer follower (``access.anti_passback``)."""

    def __init__(self, ctx: AssemblyContext, store: Store | None) -> None:
        self._ctx = ctx
        self._store = store
        self._engine: RecognitionEngine | None = None
        self._ready = asyncio.Event()
        self.service: RecognitionService | None = None
        self.snapshot_sink: SnapshotSink | None = None
        """Installed by the privacy policy when decision snapshots are on (never otherwise)."""
        self.gate: Callable[[], bool] | None = None
        """Installed by the licence: False means frames are not analysed and no template is read."""
        self._gallery_deferred = False
        self.gallery_loaded = asyncio.Event()
        """Set once the stored gallery is in the matcher (enrolment waits for it after a deferral)."""

    @property
    def name(self) -> str:
        return "recognition"

    @property
    def engine(self) -> RecognitionEngine:
        """The loaded engine; raises RuntimeError before the device's resources are open."""
        if self._engine is None:
            raise RuntimeError("recognition engine is not loaded yet")
        return self._engine

    async def wait_ready(self) -> RecognitionEngine:
        """Wait until the service subscribes to frames; return the engine."""
        await self._ready.wait()
        return self.engine

    async def __aenter__(self) -> RecognitionHost:
        ctx = self._ctx
        engine = await RecognitionEngine.create(
            ctx.config.recognition, bus=ctx.bus, clock=ctx.clock, config_path=ctx.loaded.path
        )
        if self._store is not None and self.gate is not None and not self.gate():
            self._gallery_deferred = True
            _log.warning("recognition.gallery_deferred", reason="no usable licence: no template is read")
        else:
            await self._load_gallery(engine)
        self._engine = engine
        return self

    async def _load_gallery(self, engine: RecognitionEngine) -> None:
        await self._load_templates(engine)
        self.gallery_loaded.set()

    async def _load_templates(self, engine: RecognitionEngine) -> None:
        if self._store is not None:
            report = await self._store.gallery.load_all(engine.matcher, model_id=engine.model_id)
            self._store.gallery.attach(engine.matcher)
            _log.info(
                "recognition.gallery_loaded",
                template_count=report.templates,
                subject_count=engine.matcher.subject_count,
                failures=len(report.failures),
                other_models=report.other_models,
            )
            if report.other_models:
                _log.warning(
                    "recognition.reenrolment_required",
                    other_models=report.other_models,
                    model_id=engine.model_id,
                    reason="templates of another model are never compared",
                    hint="re-enrol these subjects with this model, or set "
                    "[recognition.models] recognizer_precision to the build that made them "
                    "(templates enrolled before int8 became the default are fp32)",
                )

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._store is not None:
            self._store.gallery.attach(None)

    async def run(self) -> None:
        if self.service is None:
            self.service = RecognitionService(
                self.engine,
                self._ctx.bus,
                self._ctx.clock,
                snapshot_sink=self.snapshot_sink,
                authorise=self._authoriser(),
                gate=self.gate,
            )
        async with asyncio.TaskGroup() as tg:
            if self._gallery_deferred:
                tg.create_task(self._deferred_gallery(), name="recognition.gallery_deferred")
            tg.create_task(self._mark_ready(self.service), name="recognition.ready")
            tg.create_task(self.service.run(), name="recognition.frames")

    async def _deferred_gallery(self) -> None:
        """Load the gallery once a licence makes recognition usable (never before)."""
        gate = self.gate
        while gate is not None and not gate():
            await self._ctx.clock.sleep(0.5)
        self._gallery_deferred = False
        await self._load_gallery(self.engine)

    def _authoriser(self) -> Authorise | None:
        """Validity dates and schedules (handlers/access) when ``access.enabled``."""
        section = self._ctx.config.access
        if not section.enabled or self._store is None:
            return None
        from ..access import Authoriser, store_lookup  # noqa: PLC0415  # optional part

        return Authoriser(
            section, store_lookup(self._store), passback=self.passback, bus=self._ctx.bus
        ).authorise

    async def _mark_ready(self, service: RecognitionService) -> None:
        await service.wait_ready()
        self._ready.set()

    def health(self) -> dict[str, int | float | str | bool | None]:
        """Counts only: frames analysed and gallery size."""
        if self._engine is None:
            return {"loaded": False}
        return {
            "loaded": True,
            "frames_analysed": self.service.frames_analysed if self.service else 0,
            "gallery_templates": len(self._engine.matcher),
            "gallery_subjects": self._engine.matcher.subject_count,
        }


def build(ctx: AssemblyContext, parts: Parts) -> None:
    """Add the recognition host (resource + service) when recognition is enabled."""
    if not ctx.config.recognition.enabled:
        return
    store = parts.components.get("store")
    host = RecognitionHost(ctx, store)  # type: ignore[arg-type]  # Store or None, checked by storage.assembly
    parts.resources.append(host)
    parts.services.append(host)
    parts.components["recognition"] = host
    access = ctx.config.access
    if access.enabled and access.anti_passback != "off":
        from ..access import AntiPassback, PeerPassages  # noqa: PLC0415  # optional part

        host.passback = AntiPassback(access.anti_passback, access.anti_passback_timeout_s, ctx.clock)
        parts.components["access.passback"] = host.passback
        parts.services.append(PeerPassages(host.passback, access.peers, parts.components))
        if store is not None:  # the state survives a restart (handlers/access/journal.py)
            from ..access.journal import PassageJournal  # noqa: PLC0415  # optional part

            journal = PassageJournal(host.passback, store, ctx.clock)
            host.passback.journal = journal
            parts.resources.append(journal)
            parts.services.append(journal)
            parts.components["access.passback_journal"] = journal
    ctx.health.register("recognition", host.health)
