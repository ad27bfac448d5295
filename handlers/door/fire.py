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
import threading

import structlog

_log = structlog.get_logger("facegate.door")


class FireState(enum.Enum):
    """Where the fire release stands."""

    NORMAL = "normal"
    ACTIVE = "active"
    LATCHED = "latched"


class FireLatch:
    """The fire release state, guarded by a lock, each change logged once."""

    def __init__(self) -> None:
        self._state = FireState.NORMAL
        self._lock = threading.Lock()

    @property
    def state(self) -> FireState:
        """The current state."""
        return self._state

    @property
    def releasing(self) -> bool:
        """True while the lock must stay released (ACTIVE or LATCHED)."""
        return self._state is not FireState.NORMAL

    def input_changed(self, active: bool) -> FireState | None:
        """Apply a fire input change; return the new state if it changed."""
        if active:
            return self._move(FireState.ACTIVE)
        if self._state is FireState.ACTIVE:
            return self._move(FireState.LATCHED)
        return None

    def reset(self) -> bool:
        """End a latched release; False (nothing changes) unless LATCHED."""
        if self._state is not FireState.LATCHED:
            return False
        return self._move(FireState.NORMAL) is not None

    def _move(self, to: FireState) -> FireState | None:
        with self._lock:
            if self._state is to:
                return None
            _log.warning("door.fire_state", previous=self._state.value, state=to.value)
            self._state = to
            return to
