"""The typed in-process event bus.

Publishers call :meth:`EventBus.publish` (non-blocking). Subscribers declare
the event types they want and receive them through their own bounded queue.
A full queue applies the subscription's :class:`~facegate.runtime.events.Overflow`
policy, which defaults to the event class's own declaration.
A never-drop event that cannot be queued raises one ``bus_overflow`` SecurityEvent
per overflow episode of that subscription (until its queue drains).
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Generic, TypeVar

import structlog

from .events import Event, Overflow, SecurityEvent, SecurityKind

E = TypeVar("E", bound=Event)

_log = structlog.get_logger("facegate.bus")


@dataclass
class SubscriptionStats:
    """Counters of one subscription, reported in health telemetry."""

    delivered: int = 0
    dropped: int = 0
    overflow_errors: int = 0


class Subscription(Generic[E]):
    """A bounded queue of events of the subscribed types.

    Use as ``async with bus.subscribe(...) as sub: async for ev in sub: ...``.
    Leaving the context unsubscribes.
    """

    def __init__(
        self,
        bus: EventBus,
        types: tuple[type[E], ...],
        *,
        name: str,
        maxsize: int,
        overflow: Overflow | None,
    ) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be >= 1")
        self._bus = bus
        self.types = types
        self.name = name
        self.maxsize = maxsize
        self.overflow = overflow
        self.stats = SubscriptionStats()
        self._queue: collections.deque[E] = collections.deque()
        self._ready = asyncio.Event()
        self._closed = False
        self.overflow_reported = False

    @property
    def depth(self) -> int:
        """Events waiting in the queue now."""
        return len(self._queue)

    def _offer(self, event: E) -> None:
        policy = self.overflow or event.overflow
        if len(self._queue) >= self.maxsize:
            if policy is Overflow.NEVER_DROP:
                self.stats.overflow_errors += 1
                _log.error(
                    "bus.overflow",
                    subscriber=self.name,
                    event_type=type(event).__name__,
                    queue_size=self.maxsize,
                    overflow_errors=self.stats.overflow_errors,
                )
                self._bus._overflowed(self, event)
                return
            # Displace the oldest droppable event: a never-drop event that is already
            # queued keeps its place even in a mixed subscription.
            for i, queued in enumerate(self._queue):
                if (self.overflow or queued.overflow) is not Overflow.NEVER_DROP:
                    del self._queue[i]
                    break
            else:
                self.stats.dropped += 1  # only never-drop events queued: drop the new one
                return
            self.stats.dropped += 1
        self._queue.append(event)
        self._ready.set()

    def get_nowait(self) -> E | None:
        """Return the oldest queued event, or None when the queue is empty."""
        if not self._queue:
            return None
        event = self._queue.popleft()
        if not self._queue:
            self._ready.clear()
            self.overflow_reported = False  # drained: a new overflow is a new incident
        self.stats.delivered += 1
        return event

    async def get(self) -> E:
        """Wait for and return the oldest queued event."""
        while True:
            event = self.get_nowait()
            if event is not None:
                return event
            self._ready.clear()
            await self._ready.wait()

    def __aiter__(self) -> AsyncIterator[E]:
        return self._iter()

    async def _iter(self) -> AsyncIterator[E]:
        while not self._closed:
            yield await self.get()

    def close(self) -> None:
        """Unsubscribe; queued events are discarded."""
        self._closed = True
        self._bus._remove(self)

    async def __aenter__(self) -> Subscription[E]:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class EventBus:
    """Routes events to every subscription whose types match (``isinstance``)."""

    def __init__(self) -> None:
        self._subs: list[Subscription[Event]] = []
        self.published = 0
        self._raising = False

    def subscribe(
        self,
        *types: type[E],
        name: str,
        maxsize: int = 256,
        overflow: Overflow | None = None,
    ) -> Subscription[E]:
        """Create a subscription for ``types``.

        ``overflow`` overrides the per-event-class policy; leave it None so
        never-drop events keep their guarantee in a mixed subscription.
        """
        sub: Subscription[E] = Subscription(
            self, types, name=name, maxsize=maxsize, overflow=overflow
        )
        self._subs.append(sub)  # type: ignore[arg-type]  # Subscription is covariant in use
        return sub

    def _overflowed(self, sub: Subscription[Any], event: Event) -> None:
        """Raise ``bus_overflow`` once per overflow episode of ``sub`` (never recursively)."""
        if sub.overflow_reported or self._raising:
            return
        sub.overflow_reported = True
        self._raising = True
        incident = SecurityEvent(
            at=event.at,
            kind=SecurityKind.BUS_OVERFLOW,
            detail=f"subscriber {sub.name} lost a {type(event).__name__}",
            source="bus",
        )
        try:
            self.published += 1
            for other in self._subs:  # not to the full subscriber itself: it would only refuse it
                if other is not sub and isinstance(incident, other.types):
                    other._offer(incident)
        finally:
            self._raising = False

    def _remove(self, sub: Subscription[E]) -> None:
        self._subs = [s for s in self._subs if s is not sub]

    def publish(self, event: Event) -> None:
        """Offer ``event`` to every matching subscription. Never blocks."""
        self.published += 1
        for sub in self._subs:
            if isinstance(event, sub.types):
                sub._offer(event)

    def snapshot(self) -> dict[str, dict[str, int]]:
        """Queue depth and counters per subscription, for telemetry."""
        return {
            s.name: {
                "depth": s.depth,
                "delivered": s.stats.delivered,
                "dropped": s.stats.dropped,
                "overflow_errors": s.stats.overflow_errors,
            }
            for s in self._subs
        }
