"""Fire release state: the latch that keeps the lock released until a reset.

The relay itself is held by the GPIO driver's interlock (no event loop
needed, see :class:`~facegate.drivers.gpio.Interlock`); this state machine
only tracks what the controller reports and when a reset may end the hold.

States: ``NORMAL`` -> input active -> ``ACTIVE`` -> input cleared ->
``LATCHED`` -> reset (signed ``release`` command or the local reset input,
per ``gpio.fire_reset``) -> ``NORMAL``. A reset while the input is still
active is refused; the input becoming active again re-enters ``ACTIVE``.
"""

from __future__ import annotations

import enum

import structlog

from ...runtime.state import StateChange, StateKeeper

_log = structlog.get_logger("facegate.door")


class FireState(enum.Enum):
    """Where the fire release stands."""

    NORMAL = "normal"
    ACTIVE = "active"
    LATCHED = "latched"


def _log_change(change: StateChange[FireState]) -> None:
    _log.warning("door.fire_state", previous=change.old.value, state=change.new.value)


class FireLatch:
    """The fire release state, guarded by a lock, each change logged once."""

    def __init__(self) -> None:
        self._keeper = StateKeeper(FireState.NORMAL, component="door.fire", log=_log_change)

    @property
    def state(self) -> FireState:
        """The current state."""
        return self._keeper.state

    @property
    def releasing(self) -> bool:
        """True while the lock must stay released (ACTIVE or LATCHED)."""
        return self._keeper.state is not FireState.NORMAL

    def input_changed(self, active: bool) -> FireState | None:
        """Apply a fire input change; return the new state if it changed."""
        if active:
            return self._move(FireState.ACTIVE)
        if self._keeper.state is FireState.ACTIVE:
            return self._move(FireState.LATCHED)
        return None

    def reset(self) -> bool:
        """End a latched release; False (nothing changes) unless LATCHED."""
        if self._keeper.state is not FireState.LATCHED:
            return False
        return self._move(FireState.NORMAL) is not None

    def _move(self, to: FireState) -> FireState | None:
        return to if self._keeper.set(to) is not None else None
