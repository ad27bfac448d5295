"""The door controller: turns grants and door inputs into relay pulses and DoorEvents.

Behaviour:
- a GRANTED :class:`AccessDecision` asks the GPIO driver for a relay pulse of
  ``gpio.unlock_s``; the driver's own thread ends it, so a stalled event loop
  cannot stretch it (a new grant while unlocked extends the window).
  ``UNLOCKED``/``LOCKED`` DoorEvents carry the cause (the decision's event
  id, ``command:...``, ...); ``LOCKED`` is published by the loop-side timer;
- the door contact reports ``OPENED``/``CLOSED``; opening while the lock is
  engaged is ``FORCED`` and also a :class:`SecurityEvent` (``door_forced``);
  open longer than ``gpio.held_open_s`` is ``HELD_OPEN`` (once per opening);
  with ``relock_on_close`` the lock re-engages as the door closes;
- the exit button reports ``EXIT_REQUEST`` and releases the lock even in
  lockdown: software must never block egress;
- fire release (``gpio.fire_line``): the driver's interlock holds the lock
  released while the input is active, without the loop; this controller
  reports ``FIRE_RELEASE`` (and a SecurityEvent) and ends the hold on a reset
  (input cleared plus ``release()`` or the local reset input);
- precedence: fire release and REX win over lockdown; lockdown refuses
  grants and remote opens;
- ``gpio.relay = "none"`` (gate-controller mode): no relay is driven and no
  ``UNLOCKED``/``LOCKED`` is published; door contact and REX are still read;
- :meth:`enter_safe_state` de-energises the relay (locked for fail_secure,
  unlocked for fail_safe); it runs when ``run()`` exits for any reason and is
  called again by the Device on every shutdown path.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import structlog

from ...drivers.gpio import (
    GpioClosedError,
    GpioDriver,
    GpioInputChanged,
    LineHeldError,
    fire_active,
    relay_level,
    safe_unlocked,
)
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
from .errors import DoorLockedDownError, DoorNoRelayError, DoorNotRunningError
from .fire import FireLatch, FireState

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
        self._has_relay = section.relay == "gpio"
        self._unlocked = self._has_relay and safe_unlocked(section)
        self._lockdown = False
        self._door_open = False
        self._fire = FireLatch()
        self._tg: asyncio.TaskGroup | None = None
        self._relock: asyncio.Task[None] | None = None
        self._held: asyncio.Task[None] | None = None
        self.counters: dict[str, int] = {
            "unlocks": 0,
            "forced": 0,
            "held_open": 0,
            "refused": 0,
            "fire_releases": 0,
        }

    @property
    def name(self) -> str:
        return "door"

    @property
    def unlocked(self) -> bool:
        """True while the relay releases the lock (always False without a relay)."""
        return self._unlocked

    @property
    def locked_down(self) -> bool:
        """True between lockdown() and release()."""
        return self._lockdown

    @property
    def fire_state(self) -> FireState:
        """Where the fire release stands."""
        return self._fire.state

    @property
    def door_open(self) -> bool:
        """The door contact's last reported state."""
        return self._door_open

    def health(self) -> Mapping[str, int | str | bool]:
        """Counters and states for telemetry (no personal data)."""
        relay = "none" if not self._has_relay else "unlocked" if self._unlocked else "locked"
        return {
            "relay": relay,
            "door": "open" if self._door_open else "closed",
            "lockdown": self._lockdown,
            "fire": self._fire.state.value,
            **self.counters,
        }

    # -- command API ---------------------------------------------------------------

    async def open(self, cause: str) -> None:
        """Release the lock for ``unlock_s`` on a remote command.

        Raises DoorNotRunningError when the controller is not running,
        DoorLockedDownError in lockdown and DoorNoRelayError in gate-controller mode.
        """
        if self._tg is None:
            raise DoorNotRunningError("door controller is not running")
        if self._lockdown:
            self.counters["refused"] += 1
            raise DoorLockedDownError("door is in lockdown")
        if not self._has_relay:
            raise DoorNoRelayError("gpio.relay = 'none': an external controller owns the lock")
        # The command layer already says ``command:<nonce>``: do not prefix twice.
        self._pulse(cause if cause.startswith("command:") else f"command:{cause}")

    def lockdown(self, cause: str = "command") -> None:
        """Lock now and refuse grants and remote opens until :meth:`release`.

        A fire release in progress keeps the lock released (fire wins).
        """
        if self._lockdown:
            return
        self._lockdown = True
        self._cancel_relock()
        if not self._fire.releasing:
            self._set_relay(False, cause)
        self._publish(DoorKind.LOCKDOWN, cause)
        _log.warning("door.lockdown", cause=cause)

    def release(self, cause: str = "command") -> None:
        """End a lockdown, and reset a latched fire release when ``fire_reset = 'command'``.

        The lock stays engaged until the next grant.
        """
        if self._fire.state is FireState.LATCHED and self._cfg.fire_reset == "command":
            self._fire_reset(cause)
        elif self._fire.state is FireState.ACTIVE:
            _log.warning("door.fire_reset_refused", reason="fire input still active")
        if not self._lockdown:
            return
        self._lockdown = False
        self._publish(DoorKind.RELEASED, cause)
        _log.info("door.released", cause=cause)

    # -- SafeOutput -----------------------------------------------------------------

    def enter_safe_state(self) -> None:
        """De-energise the relay. Synchronous and idempotent.

        While a fire release holds the relay the hold stays (the process still
        lives); closing the driver releases the line.
        """
        self._cancel_relock()
        if not self._has_relay:
            return
        try:
            self._set_relay(safe_unlocked(self._cfg), "safe_state")
        except LineHeldError:
            _log.warning("door.safe_state_deferred", reason="fire release holds the relay")
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
        fire = self._cfg.fire_line
        if fire is not None and fire_active(self._cfg, self._driver.read_input(fire)):
            self._fire_input(active=True)
        elif self._has_relay and self._driver.held(self._cfg.relay_line):
            # The driver latched a fire release before this controller started: keep it
            # released and wait for the reset.
            self._fire.input_changed(True)
            self._fire.input_changed(False)
            self._unlocked = True
        elif self._has_relay:
            # Normal operation is locked, whatever the safe state is.
            self._set_relay(False, "start")
        sensor = self._cfg.door_sensor_line
        if sensor is not None:
            self._door_open = self._driver.read_input(sensor) == self._cfg.door_open_high
            if self._door_open:
                self._start_held_timer()

    def _handle(self, event: Event) -> None:
        if isinstance(event, AccessDecision):
            if (event.decision is Decision.GRANTED and event.reason != "remote_open"
                    and event.at_door):
                # remote_open: the command already actuated the door (handlers/access/remote.py);
                # a bystander's decision (at_door False, issue 16) never opens it
                if self._lockdown:
                    self.counters["refused"] += 1
                    _log.info("door.grant_refused", reason="lockdown", decision=event.event_id)
                elif self._has_relay:
                    self._pulse(f"decision:{event.event_id}")
        elif isinstance(event, GpioInputChanged):
            self._input(event.line, event.high)

    def _input(self, line: int, high: bool) -> None:
        cfg = self._cfg
        if line == cfg.door_sensor_line:
            self._door_contact(high == cfg.door_open_high)
        elif line == cfg.exit_button_line and high == cfg.exit_pressed_high:
            self._publish(DoorKind.EXIT_REQUEST, "exit_button")
            if self._has_relay:
                self._pulse("exit_request")
        elif line == cfg.fire_line:
            self._fire_input(active=fire_active(cfg, high))
        elif line == cfg.fire_reset_line and high and cfg.fire_reset == "input":
            self._fire_reset("fire_reset_input")

    def _fire_input(self, *, active: bool) -> None:
        new = self._fire.input_changed(active)
        if new is not FireState.ACTIVE:
            return
        self.counters["fire_releases"] += 1
        self._cancel_relock()
        if self._has_relay:
            # The driver's interlock already holds the relay; holding again is idempotent
            # and covers a fire input found active at start-up.
            self._driver.hold(self._cfg.relay_line, relay_level(self._cfg, unlocked=True))
            self._unlocked = True
        self._publish(DoorKind.FIRE_RELEASE, "fire_input")
        self._bus.publish(
            SecurityEvent(
                at=self._clock.wall(),
                kind=SecurityKind.FIRE_RELEASE,
                detail="fire alarm input active: lock released until reset",
                source="door",
            )
        )

    def _fire_reset(self, cause: str) -> None:
        if not self._fire.reset():
            return
        if self._has_relay:
            locked = relay_level(self._cfg, unlocked=False)
            self._driver.unhold(self._cfg.relay_line, locked)
            self._unlocked = False
            self._publish(DoorKind.LOCKED, f"fire_reset:{cause}")
        _log.warning("door.fire_reset", cause=cause)

    def _door_contact(self, is_open: bool) -> None:
        if is_open == self._door_open:
            return
        self._door_open = is_open
        if is_open:
            if self._unlocked or not self._has_relay:
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
            if self._cfg.relock_on_close and self._unlocked and not self._fire.releasing:
                self._cancel_relock()
                self._set_relay(False, "door_closed")

    def _pulse(self, cause: str) -> None:
        assert self._tg is not None
        if self._fire.releasing:
            return  # already released and held by the fire interlock
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
        # The driver ends the pulse from its own thread after unlock_s: the loop's
        # relock timer only reports it (and is late if the loop stalls).
        level = relay_level(self._cfg, unlocked=True)
        try:
            self._driver.pulse(self._cfg.relay_line, level, self._cfg.unlock_s)
        except LineHeldError:
            return  # the fire interlock latched in the driver before the loop heard of it
        self._report(True, cause)

    async def _relock_after(self) -> None:
        await self._clock.sleep(self._cfg.unlock_s)
        self._relock = None
        if not self._fire.releasing:
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
        if not self._has_relay:
            return
        self._driver.set_output(self._cfg.relay_line, relay_level(self._cfg, unlocked=unlocked))
        self._report(unlocked, cause)

    def _report(self, unlocked: bool, cause: str) -> None:
        if unlocked != self._unlocked:
            self._unlocked = unlocked
            self._publish(DoorKind.UNLOCKED if unlocked else DoorKind.LOCKED, cause)

    def _publish(self, kind: DoorKind, cause: str) -> None:
        self._bus.publish(DoorEvent(at=self._clock.wall(), kind=kind, cause=cause))
