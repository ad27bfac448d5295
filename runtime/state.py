"""The one state keeper: an Enum guarded by a lock, each change logged once and published.

:class:`StateKeeper` is generic over the state Enum. A change to the state it
already holds is a no-op (nothing logged, nothing published). A real change
is logged exactly once by the owner's ``log`` callback (the owner names its
own log event and fields) and, when the keeper has a bus, published as one
:class:`~facegate.runtime.events.ComponentStateChanged`.

The lock is a :class:`threading.Lock` held only for the swap and the log
line, so the keeper works from the event loop and from a driver's thread
alike (the door's fire latch must not depend on the loop). Publishing needs
the loop's thread: only keepers driven from the loop get a bus.
"""

from __future__ import annotations

import enum
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from .bus import EventBus
from .clock import Clock
from .events import ComponentStateChanged

S = TypeVar("S", bound=enum.Enum)


@dataclass(frozen=True, slots=True)
class StateChange(Generic[S]):
    """One real change of a keeper's state; ``detail`` must be safe to log and publish."""

    component: str
    old: S
    new: S
    detail: str


class StateKeeper(Generic[S]):
    """The current state of one component, changed under a lock and logged once per change.

    ``log`` is called once per real change, under the lock (so log lines come
    in the order of the changes). With ``bus`` (and ``clock`` for the event
    time) each change is also published as a ``ComponentStateChanged`` whose
    ``state`` is the Enum member's value.
    """

    def __init__(
        self,
        initial: S,
        *,
        component: str,
        log: Callable[[StateChange[S]], None],
        bus: EventBus | None = None,
        clock: Clock | None = None,
    ) -> None:
        if bus is not None and clock is None:
            raise ValueError("a keeper that publishes needs a clock")
        self.component = component
        self._state = initial
        self._log = log
        self._bus = bus
        self._clock = clock
        self._lock = threading.Lock()
        self.changes = 0
        """Real changes since construction."""

    @property
    def state(self) -> S:
        """The current state (read without the lock: a single reference read)."""
        return self._state

    def set(self, new: S, detail: str = "") -> StateChange[S] | None:
        """Move to ``new``: log and publish once if it differs; the change, or None."""
        with self._lock:
            old = self._state
            if new is old:
                return None
            self._state = new
            self.changes += 1
            change = StateChange(self.component, old, new, detail)
            self._log(change)
        if self._bus is not None and self._clock is not None:
            self._bus.publish(
                ComponentStateChanged(
                    at=self._clock.wall(), component=self.component, state=str(new.value), detail=detail
                )
            )
        return change
