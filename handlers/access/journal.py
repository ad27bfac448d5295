"""Anti-passback state that survives a restart (storage: ``storage/passages.py``).

:class:`PassageJournal` is a resource and a service (component
``access.passback_journal``):

- opening it (before any service runs) restores the passages of the last
  ``anti_passback_timeout_s`` into the :class:`~.passback.AntiPassback` state;
  their age is carried over by wall-clock time, so the timeout still applies
  across a restart (a passage 50 min old with a 60 min timeout expires 10 min
  after start-up);
- :meth:`AntiPassback.record` hands each passage to :meth:`put`; :meth:`run`
  (task ``access.passback_journal``) writes them in order and prunes rows
  older than the timeout, so the table holds at most one row per subject
  seen within the timeout.

A store failure while writing is logged (type only) and retried with capped
backoff; the in-memory state stays authoritative while the device runs.
"""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import Any

import structlog

from ...runtime.clock import Clock
from ...storage.passages import passages_since, prune_passages, record_passage
from .passback import AntiPassback

_log = structlog.get_logger("facegate.access")


class PassageJournal:
    """Persists :class:`AntiPassback` passages through the store (see module docstring)."""

    def __init__(self, passback: AntiPassback, store: Any, clock: Clock) -> None:
        self._passback = passback
        self._store = store
        self._clock = clock
        self._queue: asyncio.Queue[tuple[str, str, float]] = asyncio.Queue(maxsize=4096)
        self.written = 0
        self.restored = 0

    @property
    def name(self) -> str:
        return "access.passback_journal"

    async def __aenter__(self) -> PassageJournal:
        await self.restore()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.flush()

    async def restore(self) -> int:
        """Load the unexpired passages into the anti-passback state; returns how many."""
        since = self._clock.wall() - self._passback.timeout_s
        rows = await passages_since(self._store.db, since)
        for row in rows:
            self._passback.restore(row.subject_id, row.direction, row.at)
        self.restored = len(rows)
        _log.info("access.passback_restored", passages=len(rows))
        return len(rows)

    def put(self, subject_id: str, direction: str, at: float) -> None:
        """Queue one passage for writing (called on the loop by AntiPassback.record)."""
        try:
            self._queue.put_nowait((subject_id, direction, at))
        except asyncio.QueueFull:
            _log.warning("access.passback_journal_full")

    async def flush(self) -> None:
        """Write every queued passage now."""
        batch: list[tuple[str, str, float]] = []
        while not self._queue.empty():
            batch.append(self._queue.get_nowait())
        if batch:
            await self._write(batch)

    async def _write(self, batch: list[tuple[str, str, float]]) -> None:
        async with self._store.transaction() as tx:
            for subject_id, direction, at in batch:
                await record_passage(tx, subject_id, direction, at)
            await prune_passages(tx, self._clock.wall() - self._passback.timeout_s)
        self.written += len(batch)

    async def run(self) -> None:
        delay = 0.5
        while True:
            item = await self._queue.get()
            batch = [item]
            while not self._queue.empty():
                batch.append(self._queue.get_nowait())
            while True:
                try:
                    await self._write(batch)
                    delay = 0.5
                    break
                except Exception as exc:  # noqa: BLE001  # a store failure must not end the service
                    _log.warning("access.passback_write_failed", error_type=type(exc).__name__)
                    await self._clock.sleep(delay)
                    delay = min(delay * 2, 30.0)
