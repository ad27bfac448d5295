"""The single writer of the in-memory matcher: every change to it goes through here.

The gallery owns one :class:`LiveMatcher` (``Gallery.live``). Its own
enrolments and erasures update the attached matcher, and the privacy policy,
which decides when a subject must become unmatchable (withdrawal, expiry) or
matchable again (a remaining consent), asks it to do so: nothing else holds
the matcher for writing.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

from .loader import Embeddings, TemplateSink


async def _maybe_await(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


class LiveMatcher:
    """Writes to the attached :class:`TemplateSink` (sync or async); a no-op when none is attached."""

    def __init__(self) -> None:
        self._sink: TemplateSink | None = None

    @property
    def sink(self) -> TemplateSink | None:
        """The attached matcher (None: none)."""
        return self._sink

    def attach(self, sink: TemplateSink | None) -> None:
        self._sink = sink

    async def add(
        self, subject_id: str, template_ids: Sequence[str], embeddings: Embeddings, model_id: str
    ) -> None:
        """Make the subject's templates matchable."""
        if self._sink is not None:
            ids = list(template_ids)
            await _maybe_await(self._sink.add_batch([subject_id] * len(ids), ids, embeddings, model_id))

    async def remove(self, subject_id: str) -> None:
        """Make the subject unmatchable at once."""
        if self._sink is not None:
            await _maybe_await(self._sink.remove_subject(subject_id))

    async def remove_many(self, subject_ids: Sequence[str]) -> None:
        """Make several subjects unmatchable (in one call when the matcher can)."""
        if self._sink is None or not subject_ids:
            return
        remove_subjects = getattr(self._sink, "remove_subjects", None)
        if callable(remove_subjects):
            await _maybe_await(remove_subjects(list(subject_ids)))
            return
        for sid in subject_ids:
            await _maybe_await(self._sink.remove_subject(sid))

    def clear(self) -> None:
        """Forget every subject (teardown seen from another process), when the matcher can."""
        clear = getattr(self._sink, "clear", None)
        if callable(clear):
            clear()
