"""The stored gallery into the engine's matcher: at start-up, or once a licence allows it.

Without a usable licence no template may be read (``gate()`` is False), so the
load waits: :class:`GalleryLoader` is then also a Service
(``recognition.gallery_deferred``) that loads as soon as the gate opens.
:attr:`GalleryLoader.loaded` is set once the templates are in the matcher
(enrolment after a licence install waits for it).
"""

from __future__ import annotations

import asyncio
import ctypes
from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt
import structlog

from ...runtime.clock import Clock
from ...storage import Store
from .engine import RecognitionEngine
from .matcher import Matcher

_log = structlog.get_logger("facegate.recognition")


def trim_heap() -> bool:
    """Return the allocator's free pages to the OS (glibc ``malloc_trim(0)``); False elsewhere.

    A load decrypts every template into short-lived rows, ids and chunks in worker
    threads: once they are freed, glibc keeps most of those pages in its arenas
    (fragmented between the long-lived ids), and the first searches then grow the
    process past its peak at ready. Trimming once after the load returns them.
    """
    # The process's own symbols include the C library's (no find_library: it runs ldconfig).
    trim = getattr(ctypes.CDLL(None), "malloc_trim", None)
    if trim is None:  # not glibc (musl has no malloc_trim): nothing to return
        return False
    return bool(trim(0))


class _DeferredPackSink:
    """The matcher as the loader's sink: batches are inserted on the loop (vectorised copies)
    but their scan segments are packed once, after the load, in a worker thread
    (:meth:`Matcher.prepare`: an onnxruntime session per segment must not stall the loop)."""

    def __init__(self, matcher: Matcher) -> None:
        self._matcher = matcher

    def reserve(self, rows: int) -> None:
        self._matcher.reserve(rows)

    def add_batch(self, subject_ids: Sequence[str], template_ids: Sequence[str],
                  embeddings: npt.NDArray[np.float32], model_id: str) -> None:
        self._matcher.add_batch(subject_ids, template_ids, embeddings, model_id)

    def add(self, subject_id: str, template_id: str, embedding: npt.NDArray[np.float32],
            model_id: str) -> None:
        self.add_batch([subject_id], [template_id], embedding[None], model_id)

    def remove_subject(self, subject_id: str) -> int:
        return self._matcher.remove_subject(subject_id)


class LiveSink:
    """The matcher as the gallery's live sink once loaded (enrolments, erasures, withdrawals).

    A change takes effect before the call returns: an enrolment or one subject's
    removal is O(its rows) on the loop; a bulk removal (O(gallery) when it compacts)
    runs in a worker thread. The matcher scores the rows a change leaves pending
    exactly; when enough are pending, the re-pack (an onnxruntime session per 65,536-row
    segment, ~0.1 s) runs in a worker thread afterwards, never on the loop or inside a
    search (before: a removal at 1M stalled the loop ~60 ms, a bulk one ~1 s).
    """

    def __init__(self, matcher: Matcher) -> None:
        self.matcher = matcher

    async def add_batch(self, subject_ids: Sequence[str], template_ids: Sequence[str],
                        embeddings: npt.NDArray[np.float32], model_id: str) -> None:
        self.matcher.add_batch(subject_ids, template_ids, embeddings, model_id)
        await self._repack()

    async def add(self, subject_id: str, template_id: str, embedding: npt.NDArray[np.float32],
                  model_id: str) -> None:
        await self.add_batch([subject_id], [template_id], embedding[None], model_id)

    async def remove_subject(self, subject_id: str) -> int:
        removed = self.matcher.remove_subject(subject_id)
        await self._repack()
        return removed

    async def remove_subjects(self, subject_ids: Sequence[str]) -> int:
        removed = await asyncio.to_thread(self.matcher.remove_subjects, list(subject_ids))
        await self._repack()
        return removed

    def clear(self) -> None:
        self.matcher.clear()

    async def _repack(self) -> None:
        if self.matcher.needs_pack:
            await asyncio.to_thread(self.matcher.pack)


class GalleryLoader:
    """Loads ``store``'s gallery into ``engine.matcher`` and attaches the gallery to it."""

    def __init__(
        self,
        engine: RecognitionEngine,
        store: Store,
        *,
        clock: Clock,
        gate: Callable[[], bool] | None = None,
    ) -> None:
        self._engine = engine
        self._store = store
        self._clock = clock
        self._gate = gate
        self.loaded = asyncio.Event()

    @property
    def name(self) -> str:
        return "recognition.gallery_deferred"

    @property
    def allowed(self) -> bool:
        """True when templates may be read now."""
        return self._gate is None or self._gate()

    async def load(self) -> None:
        """Decrypt every template into the matcher (off the loop, in batches); attach the gallery."""
        engine, gallery = self._engine, self._store.gallery
        report = await gallery.load_all(_DeferredPackSink(engine.matcher), model_id=engine.model_id)
        # Trimmed before packing too: the packing's temporaries then reuse returned pages
        # instead of adding to the load's high-water mark (issue 16: peak RSS is a target).
        await asyncio.to_thread(trim_heap)
        await asyncio.to_thread(engine.matcher.prepare)
        gallery.attach(LiveSink(engine.matcher))
        await asyncio.to_thread(trim_heap)
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
                "(the model id ends in ':int8r...' for int8; 'auto' keeps the build pinned "
                "in the model cache, recognizer-build.json)",
            )
        self.loaded.set()

    async def run(self) -> None:
        """The deferred load: wait until the gate opens, load once, then idle."""
        while not self.loaded.is_set():
            if self.allowed:
                await self.load()
                break
            await self._clock.sleep(0.5)
        await asyncio.Event().wait()
