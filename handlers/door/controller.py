"""The door controller: turns grants and door inputs into relay pulses and DoorEvents.

Behaviour:
- a GRANTED :class:`AccessDecision` energises the relay for ``gpio.unlock_s``
  (a new grant while unlocked extends the window); ``UNLOCKED``/``LOCKED``
  DoorEvents carry the cause (the decision's event id, ``command:...``, ...);
- the door contact reports ``OPENED``/``CLOSED``; opening while the lock is
  engaged is ``FORCED`` and also a :class:`SecurityEvent` (``door_forced``);
  open longer than ``gpio.held_open_s`` is ``HELD_OPEN`` (once per opening);
  with ``relock_on_close`` the lock re-engages as the door closes;
- the exit button reports ``EXIT_REQUEST`` and releases the lock even in
  lockdown: software must never block egress;
- ``lockdown()`` locks at once and refuses grants and remote opens until
  ``release()``;
- :meth:`enter_safe_state` drives the relay to ``gpio.safe_state``; it runs
  when ``run()`` exits for any reason and is called again by the Device on
  every shutdown path.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import structlog

from ...drivers.gpio import GpioClosedError, GpioDriver, GpioInputChanged, relay_level
from ...runtime.bus import EventBus
from ...runtime.clock import Clock
from ...runtime.config.gpio import GpioSection
from ...runtime.events import (
    AccessDecision,
    Decision,
    DoorEvent,
    DoorKind,
    Event,
    SecurityEvent,
    SecurityKind,
)
from .errors import DoorLockedDownError, DoorNotRunningError

_log = structlog.get_logger("facegate.door")


class DoorController:
    """Service ``door`` and SafeOutput of the lock relay."""

    def __init__(
        self, section: GpioSection, driver: GpioDriver, bus: EventBus, clock: Clock
    ) -> None:
        self._cfg = section
        self._driver = driver
        self._bus = bus
        self._clock = clock
        self._unlocked = section.safe_state == "unlocked"
        self._lockdown = False
        self._door_open = False
        self._tg: asyncio.TaskGroup | None = None
        self._relock: asyncio.Task[None] | None = None
        self._held: asyncio.Task[None] | None = None
        self.counters: dict[str, int] = {"unlocks": 0, "forced": 0, "held_open": 0, "refused": 0}

    @property
    def name(self) -> str:
        return "door"

    @property
    def unlocked(self) -> bool:
        """True while the relay releases the lock."""
        return self._unlocked

    @property
    def locked_down(self) -> bool:
        """True between lockdown() and release()."""
        return self._lockdown

    def health(self) -> Mapping[str, int | str | bool]:
        """Counters and states for telemetry (no personal data)."""
        return {
            "relay": "unlocked" if self._unlocked else "locked",
            "door": "open" if self._door_open else "closed",
            "lockdown": self._lockdown,
            **self.counters,
        }

    # -- command API ---------------------------------------------------------------

    async def open(self, cause: str) -> None:
        """Release the lock for ``unlock_s`` on a remote command.

        Raises DoorNotRunningError when the controller is not running and
        DoorLockedDownError in lockdown.
        """
        if self._tg is None:
            raise DoorNotRunningError("door controller is not running")
        if self._lockdown:
            self.counters["refused"] += 1
            raise DoorLockedDownError("door is in lockdown")
        self._pulse(f"command:{cause}")

    def lockdown(self, cause: str = "command") -> None:
        """Lock now and refuse grants and remote opens until :meth:`release`."""
        if self._lockdown:
            return
        self._lockdown = True
        self._cancel_relock()
        self._set_relay(False, cause)
        self._publish(DoorKind.LOCKDOWN, cause)
        _log.warning("door.lockdown", cause=cause)

    def release(self, cause: str = "command") -> None:
        """End a lockdown; the lock stays engaged until the next grant."""
        if not self._lockdown:
            return
        self._lockdown = False
        self._publish(DoorKind.RELEASED, cause)
        _log.info("door.released", cause=cause)

    # -- SafeOutput -----------------------------------------------------------------

    def enter_safe_state(self) -> None:
        """Drive the relay to the configured safe state. Synchronous and idempotent."""
        self._cancel_relock()
        safe_unlocked = self._cfg.safe_state == "unlocked"
        try:
            self._set_relay(safe_unlocked, "safe_state")
        except GpioClosedError:
            # The line is not claimed (start-up failed or already released): the driver
            # started it, and leaves it, at its safe level.
            _log.debug("door.safe_state_skipped", reason="gpio closed")
        except Exception:  # noqa: BLE001  # a shutdown path must go on; the driver's failure is logged
            _log.exception("door.safe_state_failed")

    # -- Service --------------------------------------------------------------------

    async def run(self) -> None:
        try:
            async with (
                self._bus.subscribe(
                    AccessDecision, GpioInputChanged, name="door", maxsize=64
                ) as sub,
                asyncio.TaskGroup() as tg,
            ):
                self._tg = tg
                self._start()
                async for event in sub:
                    self._handle(event)
        finally:
            self._tg = None
            self._relock = self._held = None
            self.enter_safe_state()

    def _start(self) -> None:
        # Normal operation is locked, whatever the safe state is.
        self._set_relay(False, "start")
        sensor = self._cfg.door_sensor_line
        if sensor is not None:
            self._door_open = self._driver.read_input(sensor) == self._cfg.door_open_high
            if self._door_open:
                self._start_held_timer()

    def _handle(self, event: Event) -> None:
        if isinstance(event, AccessDecision):
            if event.decision is Decision.GRANTED:
                if self._lockdown:
                    self.counters["refused"] += 1
                    _log.info("door.grant_refused", reason="lockdown", decision=event.event_id)
                else:
                    self._pulse(f"decision:{event.event_id}")
        elif isinstance(event, GpioInputChanged):
            if event.line == self._cfg.door_sensor_line:
                self._door_contact(event.high == self._cfg.door_open_high)
            elif event.line == self._cfg.exit_button_line and (
                event.high == self._cfg.exit_pressed_high
            ):
                self._publish(DoorKind.EXIT_REQUEST, "exit_button")
                self._pulse("exit_request")

    def _door_contact(self, is_open: bool) -> None:
        if is_open == self._door_open:
            return
        self._door_open = is_open
        if is_open:
            if self._unlocked:
                self._publish(DoorKind.OPENED, "door_sensor")
            else:
                self.counters["forced"] += 1
                self._publish(DoorKind.FORCED, "door_sensor")
                self._bus.publish(
                    SecurityEvent(
                        at=self._clock.wall(),
                        kind=SecurityKind.DOOR_FORCED,
                        detail="door opened while locked",
                        source="door",
                    )
                )
                _log.warning("door.forced")
            self._start_held_timer()
        else:
            if self._held is not None:
                self._held.cancel()
                self._held = None
            self._publish(DoorKind.CLOSED, "door_sensor")
            if self._cfg.relock_on_close and self._unlocked:
                self._cancel_relock()
                self._set_relay(False, "door_closed")

    def _pulse(self, cause: str) -> None:
        assert self._tg is not None
        # The relock timer is started before the relay moves: while run() is exiting
        # its TaskGroup refuses new tasks, and a relay released without a timer would
        # stay unlocked until the safe state (and the caller would get a RuntimeError).
        timer = self._relock_after()
        try:
            relock = self._tg.create_task(timer, name="door.relock")
        except RuntimeError:
            timer.close()
            raise DoorNotRunningError("door controller is stopping") from None
        self._cancel_relock()
        self._relock = relock
        self.counters["unlocks"] += 1
        self._set_relay(True, cause)

    async def _relock_after(self) -> None:
        await self._clock.sleep(self._cfg.unlock_s)
        self._relock = None
        self._set_relay(False, "timeout")

    def _start_held_timer(self) -> None:
        if self._tg is None:
            return
        if self._held is not None:
            self._held.cancel()
        self._held = self._tg.create_task(self._held_after(), name="door.held_open")

    async def _held_after(self) -> None:
        await self._clock.sleep(self._cfg.held_open_s)
        self._held = None
        self.counters["held_open"] += 1
        self._publish(DoorKind.HELD_OPEN, "door_sensor")
        _log.warning("door.held_open", held_open_s=self._cfg.held_open_s)

    def _cancel_relock(self) -> None:
        if self._relock is not None:
            self._relock.cancel()
            self._relock = None

    def _set_relay(self, unlocked: bool, cause: str) -> None:
        self._driver.set_output(self._cfg.relay_line, relay_level(self._cfg, unlocked=unlocked))
        if unlocked != self._unlocked:
            self._unlocked = unlocked
            self._publish(DoorKind.UNLOCKED if unlocked else DoorKind.LOCKED, cause)

    def _publish(self, kind: DoorKind, cause: str) -> None:
        self._bus.publish(DoorEvent(at=self._clock.wall(), kind=kind, cause=cause))
