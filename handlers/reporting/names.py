"""Display names for ``event/access`` when ``events.include_names`` is on.

:class:`SubjectNames` reads a subject's display name from the encrypted
gallery (:meth:`facegate.storage.gallery.Gallery.get`) and caches it per
subject id, so a busy gate costs one lookup per person, not per decision.

Contract:

* :meth:`SubjectNames.prefetch` (async) fills the cache for the subject ids
  of a batch; :meth:`SubjectNames.get` (sync, a
  :data:`~facegate.handlers.reporting.codec.NameResolver`) answers from the cache
  only. The durable sink prefetches, then encodes.
* A cached entry lives ``ttl_s`` seconds and is dropped at once when a
  ``PrivacyEvent`` for that subject (rectification, erasure, consent change)
  reaches the bus; a teardown clears everything. The TTL covers changes
  made by another process (the CLI), whose events this bus never sees.
* A subject that is unknown, erased or unreadable has no name (``None``):
  the payload then carries no ``name`` field. A failed lookup is logged with
  the error type only: the name itself is never logged.

The lookup is two indexed SQLite reads (on aiosqlite's thread) and one
AES-GCM open of a small blob, which is microseconds: it stays on the loop.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from typing import Protocol

import structlog

from ...runtime.bus import EventBus
from ...runtime.clock import Clock
from ...runtime.events import PrivacyEvent, PrivacyKind
from ...storage.errors import KeyUnavailableError, StorageError, SubjectNotFoundError

_log = structlog.get_logger("facegate.mqtt")


class _Record(Protocol):
    @property
    def display_name(self) -> str | None: ...


class GalleryLike(Protocol):
    """What :class:`SubjectNames` needs from :class:`facegate.storage.gallery.Gallery`."""

    async def get(self, subject_id: str) -> _Record: ...


class SubjectNames:
    """Cached subject id -> display name (see module docstring). Service ``mqtt.names``."""

    def __init__(
        self,
        gallery: GalleryLike,
        *,
        clock: Clock,
        bus: EventBus | None = None,
        ttl_s: float = 60.0,
        max_entries: int = 4096,
        name: str = "mqtt.names",
    ) -> None:
        if ttl_s <= 0 or max_entries < 1:
            raise ValueError("ttl_s must be > 0 and max_entries >= 1")
        self._gallery = gallery
        self._clock = clock
        self._bus = bus
        self._ttl = ttl_s
        self._max = max_entries
        self._name = name
        self._cache: OrderedDict[str, tuple[str | None, float]] = OrderedDict()
        self._gen = 0  # bumped by every invalidation (a read racing with one is not cached)
        self.lookups = 0
        """Gallery reads so far (cache misses); no personal data."""

    @property
    def name(self) -> str:
        return self._name

    def get(self, subject_id: str) -> str | None:
        """The cached display name (None when unknown, not cached or expired)."""
        hit = self._cache.get(subject_id)
        if hit is None or hit[1] <= self._clock.monotonic():
            return None
        return hit[0]

    async def lookup(self, subject_id: str) -> str | None:
        """The display name, from the cache or the gallery."""
        await self.prefetch((subject_id,))
        return self.get(subject_id)

    async def prefetch(self, subject_ids: Iterable[str | None]) -> None:
        """Make sure each id's name is cached (reads the gallery for misses)."""
        now = self._clock.monotonic()
        for sid in dict.fromkeys(s for s in subject_ids if s):
            hit = self._cache.get(sid)
            if hit is not None and hit[1] > now:
                continue
            for _ in range(3):
                gen = self._gen
                name = await self._read(sid)
                if gen == self._gen:  # no invalidation raced with the read: safe to cache
                    break
            else:
                continue  # changing under us: leave it uncached (no name this time)
            self._cache[sid] = (name, self._clock.monotonic() + self._ttl)
            self._cache.move_to_end(sid)
            while len(self._cache) > self._max:
                self._cache.popitem(last=False)

    async def _read(self, subject_id: str) -> str | None:
        self.lookups += 1
        try:
            record = await self._gallery.get(subject_id)
        except (SubjectNotFoundError, KeyUnavailableError):
            return None  # not enrolled, or erased (its key is shredded)
        except StorageError as exc:  # tampered or unreadable: no name, and say so (never the name)
            _log.warning("mqtt.names.unavailable", subject_id=subject_id, error_type=type(exc).__name__)
            return None
        return record.display_name

    def invalidate(self, subject_id: str | None = None) -> None:
        """Forget one subject's name, or every name (``None``)."""
        self._gen += 1
        if subject_id is None:
            self._cache.clear()
        else:
            self._cache.pop(subject_id, None)

    async def run(self) -> None:
        """Drop cached names when the policy reports a change (needs the bus)."""
        if self._bus is None:
            raise RuntimeError("SubjectNames.run needs a bus")
        async with self._bus.subscribe(PrivacyEvent, name=self._name, maxsize=256) as sub:
            async for ev in sub:
                if ev.kind is PrivacyKind.TEARDOWN or ev.subject_id is None:
                    self.invalidate()
                else:
                    self.invalidate(ev.subject_id)
