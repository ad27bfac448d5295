"""Driver-side ownership of output lines: pulses that end without the event loop.

Every output write of a driver goes through one :class:`LineOwner`, under one
lock. ``pulse(line, level, seconds)`` drives the line now and records a
deadline; a daemon thread (not the asyncio loop) drives the line back when the
deadline passes, so a stalled or blocked event loop cannot stretch a relay
pulse. A later ``set()`` or ``pulse()`` of the same line replaces the pending
end. ``hold()`` pins a line at a level (fire release): while held, ``set()``
and ``pulse()`` of that line are refused until ``unhold()``.

Time is the driver's clock. With a clock offering ``add_listener`` (the tests'
:class:`~facegate.runtime.clock.ManualClock`) the due pulses also end, in the
caller's thread, as soon as that clock moves past their deadline, so tests
stay deterministic.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from .errors import LineHeldError

_log = structlog.get_logger("facegate.gpio")

Writer = Callable[[int, bool], None]


@dataclass(frozen=True, slots=True)
class _Pending:
    deadline: float
    end_level: bool


class LineOwner:
    """Serialises writes to output lines and ends pulses from its own thread."""

    def __init__(
        self,
        write: Writer,
        monotonic: Callable[[], float],
        *,
        name: str = "gpio",
        spin_s: float = 0.0,
    ) -> None:
        self._write = write
        self._monotonic = monotonic
        self._name = name
        self._spin_s = spin_s
        self._cond = threading.Condition()
        self._pending: dict[int, _Pending] = {}
        self._held: dict[int, bool] = {}
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._poll: Callable[[], None] | None = None
        self._poll_s = 1.0

    def set_poller(self, poll: Callable[[], None], interval_s: float) -> None:
        """Call ``poll`` from the thread at least every ``interval_s`` (interlock inputs)."""
        self._poll, self._poll_s = poll, interval_s

    # -- lifecycle (driver open/close) ----------------------------------------------

    def start(self) -> None:
        """Start the pulse thread. Idempotent."""
        with self._cond:
            if self._thread is not None:
                return
            self._stopping = False
            self._thread = threading.Thread(
                target=self._run, name=f"{self._name}.pulse", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        """End every pending pulse now (lines go to their end level) and stop the thread."""
        with self._cond:
            thread, self._thread = self._thread, None
            self._stopping = True
            for line, pending in list(self._pending.items()):
                del self._pending[line]
                self._safe_write(line, pending.end_level)
            self._cond.notify_all()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5.0)

    # -- writes -----------------------------------------------------------------------

    def set(self, line: int, level: bool) -> None:
        """Drive ``line`` to ``level``; cancels a pending pulse end of that line."""
        with self._cond:
            if line in self._held:
                if level != self._held[line]:
                    raise LineHeldError(f"line {line} is held (fire release)")
                self._pending.pop(line, None)
                return
            self._pending.pop(line, None)
            self._write(line, level)

    def pulse(self, line: int, level: bool, seconds: float) -> None:
        """Drive ``line`` to ``level`` now and back to ``not level`` after ``seconds``."""
        with self._cond:
            if line in self._held:
                raise LineHeldError(f"line {line} is held (fire release)")
            # The deadline is taken before the write: a preemption in between can only
            # shorten the pulse, never stretch it.
            deadline = self._monotonic() + seconds
            self._write(line, level)
            self._pending[line] = _Pending(deadline, not level)
            self._cond.notify_all()

    def hold(self, line: int, level: bool) -> None:
        """Pin ``line`` at ``level`` until :meth:`unhold` (pending pulse ends are dropped)."""
        with self._cond:
            self._pending.pop(line, None)
            self._held[line] = level
            self._write(line, level)

    def unhold(self, line: int, level: bool) -> None:
        """Release a hold and drive ``line`` to ``level``."""
        with self._cond:
            self._held.pop(line, None)
            self._write(line, level)

    def held(self, line: int) -> bool:
        """True while ``line`` is held."""
        with self._cond:
            return line in self._held

    def expire_due(self) -> None:
        """End every pulse whose deadline has passed (any thread)."""
        with self._cond:
            self._expire_locked()

    # -- the thread --------------------------------------------------------------------

    def _expire_locked(self) -> float | None:
        """End due pulses; return the seconds until the next deadline (None: none)."""
        now = self._monotonic()
        nearest: float | None = None
        for line, pending in list(self._pending.items()):
            if pending.deadline <= now:
                del self._pending[line]
                self._safe_write(line, pending.end_level)
            else:
                left = pending.deadline - now
                nearest = left if nearest is None else min(nearest, left)
        return nearest

    def _run(self) -> None:
        _raise_priority()
        with self._cond:
            while not self._stopping:
                if self._poll is not None:
                    self._safe_poll(self._poll)
                wait = self._expire_locked()
                if wait is not None and wait <= self._spin_s:
                    self._spin(wait)
                    continue
                # Capped so that a clock without listeners is still re-read now and then.
                cap = self._poll_s
                self._cond.wait(cap if wait is None else min(wait - self._spin_s, cap))

    def _spin(self, wait: float) -> None:
        """Busy-wait the last ``spin_s`` before a deadline, without holding the lock.

        Waking from a sleep on a loaded CPU can take tens of milliseconds; a thread
        that is already running ends the pulse on time. Only for real-time clocks.
        """
        deadline = self._monotonic() + wait
        self._cond.release()
        try:
            while self._monotonic() < deadline and not self._stopping:
                pass
        finally:
            self._cond.acquire()

    def _safe_poll(self, poll: Callable[[], None]) -> None:
        try:
            poll()
        except Exception:  # noqa: BLE001  # the pulse thread must survive a failed input read
            _log.exception("gpio.interlock_poll_failed")

    def _safe_write(self, line: int, level: bool) -> None:
        try:
            self._write(line, level)
        except Exception:  # noqa: BLE001  # the pulse thread must survive a failed write
            _log.exception("gpio.pulse_end_failed", line=line)


PULSE_THREAD_NICE = -10
"""Niceness asked for the pulse thread: a loaded CPU must not delay a pulse's end."""


def _raise_priority() -> None:
    """Run the pulse thread at a higher priority when the process may (CAP_SYS_NICE or root).

    Without the right the thread keeps the process's priority; the pulse still
    ends, only with more scheduling latency on a loaded CPU (docs/gate.md).
    """
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), PULSE_THREAD_NICE)
    except (PermissionError, OSError, AttributeError):
        _log.debug("gpio.pulse_priority_unchanged")
