"""Gate control on a simulated chip: lock types, fire release, gate-controller mode,
input debounce, precedence of lockdown, fire and REX, and GPIO opened first."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from facegate.drivers.gpio import GpioInputWatcher, SimulatedGpio, build_driver
from facegate.handlers.door import DoorController, DoorNoRelayError, FireState
from facegate.runtime.app import root
from facegate.runtime.app.device import Device
from facegate.runtime.bus import EventBus
from facegate.runtime.clock import Clock, ManualClock, SystemClock
from facegate.runtime.config.gpio import GpioSection
from facegate.runtime.events import DoorEvent, SecurityEvent

from ...runtime.util import load_text
from .test_door import Rig, settle

RELAY, SENSOR, BUTTON, FIRE, RESET = 17, 22, 23, 24, 25


@asynccontextmanager
async def rig_for(
    clock: Clock | None = None, initial: Mapping[int, bool] | None = None, **cfg: Any
) -> AsyncIterator[Rig]:
    section = GpioSection(
        relay_line=RELAY,
        door_sensor_line=SENSOR,
        exit_button_line=BUTTON,
        unlock_s=3.0,
        **cfg,
    )
    clock = clock or ManualClock()
    bus = EventBus()
    built = build_driver(section, clock)
    assert isinstance(built, SimulatedGpio)
    gpio = SimulatedGpio(
        outputs=built.outputs,
        inputs=built.inputs,
        clock=clock,
        interlocks=built.interlocks,
        initial_inputs=initial,
    )
    door = DoorController(section, gpio, bus, clock)
    watcher = GpioInputWatcher(
        gpio,
        bus,
        clock,
        min_pulse_s=section.input_min_pulse_ms / 1000,
        immediate=[i.input_line for i in gpio.interlocks],
    )
    async with gpio, bus.subscribe(DoorEvent, SecurityEvent, name="t", maxsize=64) as sub:
        tasks = [
            asyncio.create_task(door.run(), name="door"),
            asyncio.create_task(watcher.run(), name="gpio"),
        ]
        await settle()
        assert isinstance(clock, ManualClock | SystemClock)
        try:
            yield Rig(clock, bus, gpio, door, sub)  # type: ignore[arg-type]  # only ManualClock rigs advance
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


async def press(rig: Rig, line: int, high: bool = True, hold_s: float = 0.5) -> None:
    """Drive an input and hold it past the minimum pulse."""
    rig.gpio.drive_input(line, high)
    await settle()
    await rig.clock.advance(hold_s)


# -- lock types ----------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize(("lock", "energised_unlocks"), [("fail_secure", True), ("fail_safe", False)])
async def test_pulse_length_and_polarity_for_both_lock_types(lock: str, energised_unlocks: bool) -> None:
    async with rig_for(lock_type=lock, input_min_pulse_ms=0) as rig:
        locked_level = not energised_unlocks
        assert rig.gpio.level(RELAY) is locked_level
        rig.grant("g-1")
        await settle()
        assert rig.gpio.level(RELAY) is energised_unlocks
        await rig.clock.advance(2.999)
        assert rig.gpio.level(RELAY) is energised_unlocks
        await rig.clock.advance(0.001)
        assert rig.gpio.level(RELAY) is locked_level
        pulse = [c for c in rig.gpio.output_changes if c.high is energised_unlocks]
        assert len(pulse) == 1 and pulse[0].monotonic == 1000.0
        # A maglock starts released (de-energised) and locks as the controller starts.
        started = ["locked"] if lock == "fail_safe" else []
        assert rig.kinds() == [*started, "unlocked", "locked"]
        rig.door.enter_safe_state()
        assert rig.gpio.level(RELAY) is False  # safe = de-energised for both types


# -- fire release --------------------------------------------------------------------


@pytest.mark.asyncio
async def test_fire_release_holds_until_input_cleared_and_signed_release() -> None:
    async with rig_for(fire_line=FIRE, input_min_pulse_ms=0) as rig:
        rig.gpio.drive_input(FIRE, True)  # NO contact: high = alarm
        assert rig.gpio.level(RELAY) is True  # the driver's interlock, before any loop pass
        await settle()
        assert rig.kinds() == ["fire_release", "security:fire_release"]
        assert rig.door.fire_state is FireState.ACTIVE
        rig.grant()  # grants change nothing while released
        await settle()
        rig.door.release("operator")  # refused: the input is still active
        await rig.clock.advance(600)
        assert rig.gpio.level(RELAY) is True
        rig.gpio.drive_input(FIRE, False)
        await settle()
        await rig.clock.advance(600)
        assert rig.door.fire_state is FireState.LATCHED
        assert rig.gpio.level(RELAY) is True  # latched until reset
        rig.door.release("operator")
        assert rig.gpio.level(RELAY) is False
        assert rig.door.fire_state is FireState.NORMAL
        assert rig.kinds() == ["locked"]
        rig.grant("after")  # normal operation again
        await settle()
        assert rig.gpio.level(RELAY) is True


@pytest.mark.asyncio
async def test_fire_nc_contact_with_local_reset_input() -> None:
    cfg = {"fire_line": FIRE, "fire_contact": "nc", "fire_reset": "input", "fire_reset_line": RESET}
    async with rig_for(initial={FIRE: True}, **cfg) as rig:
        assert rig.gpio.level(RELAY) is False and rig.kinds() == []
        await press(rig, FIRE, False)  # NC opens (or the wire is cut): alarm
        assert rig.gpio.level(RELAY) is True
        await press(rig, RESET, True)
        await press(rig, RESET, False)
        assert rig.door.fire_state is FireState.ACTIVE  # reset ignored while in alarm
        rig.door.release("operator")  # fire_reset = input: a command does not reset
        await press(rig, FIRE, True)
        assert rig.door.fire_state is FireState.LATCHED and rig.gpio.level(RELAY) is True
        rig.door.release("operator")
        assert rig.gpio.level(RELAY) is True
        await press(rig, RESET, True)
        assert rig.gpio.level(RELAY) is False
        assert rig.kinds() == ["fire_release", "security:fire_release", "locked"]


@pytest.mark.asyncio
async def test_fire_input_active_at_start_up_releases_before_the_loop_runs() -> None:
    clock = ManualClock()
    section = GpioSection(relay_line=RELAY, fire_line=FIRE)
    built = build_driver(section, clock)
    gpio = SimulatedGpio(
        outputs=built.outputs, inputs=built.inputs, clock=clock,
        interlocks=built.interlocks, initial_inputs={FIRE: True},
    )
    bus = EventBus()
    async with gpio, bus.subscribe(DoorEvent, name="t", maxsize=8) as sub:
        assert gpio.level(RELAY) is True  # held by open(), no controller yet
        door = DoorController(section, gpio, bus, clock)
        task = asyncio.create_task(door.run(), name="door")
        await settle()
        assert gpio.level(RELAY) is True and door.fire_state is FireState.ACTIVE
        ev = sub.get_nowait()
        assert ev is not None and ev.kind.value == "fire_release"
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@pytest.mark.asyncio
async def test_fire_latched_in_the_driver_before_the_controller_starts_waits_for_reset() -> None:
    clock = ManualClock()
    section = GpioSection(relay_line=RELAY, fire_line=FIRE)
    built = build_driver(section, clock)
    assert isinstance(built, SimulatedGpio)
    bus = EventBus()
    async with built:
        built.drive_input(FIRE, True)  # alarm and clear while no controller runs
        built.drive_input(FIRE, False)
        door = DoorController(section, built, bus, clock)
        task = asyncio.create_task(door.run(), name="door")
        await settle()
        assert built.level(RELAY) is True and door.fire_state is FireState.LATCHED
        door.release("operator")
        assert built.level(RELAY) is False and door.fire_state is FireState.NORMAL
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@pytest.mark.asyncio
async def test_fire_release_with_the_loop_stalled() -> None:
    async with rig_for(clock=SystemClock(), fire_line=FIRE, input_min_pulse_ms=0) as rig:
        seen: list[bool] = []

        def fire_panel() -> None:
            # One thread, so the relay is read after the alarm however late a loaded
            # machine schedules it (two timers could run in either order).
            time.sleep(0.1)
            rig.gpio.drive_input(FIRE, True)
            time.sleep(0.3)
            seen.append(rig.gpio.level(RELAY))

        panel = threading.Thread(target=fire_panel, name="fire-panel")
        panel.start()
        time.sleep(1.0)  # noqa: ASYNC251  # loop blocked: recognition, MQTT, storage, door stalled
        panel.join()
        assert seen == [True], "the relay must be released while the loop is blocked"
        async with asyncio.timeout(60):
            while rig.door.fire_state is not FireState.ACTIVE:  # noqa: ASYNC110  # no event to await
                await asyncio.sleep(0.01)
        assert rig.kinds() == ["fire_release", "security:fire_release"]


@pytest.mark.asyncio
async def test_a_short_fire_pulse_latches_and_is_reported_not_debounced_away() -> None:
    async with rig_for(fire_line=FIRE, input_min_pulse_ms=100) as rig:
        rig.gpio.drive_input(FIRE, True)
        await settle()
        await rig.clock.advance(0.01)  # 10 ms: below the minimum pulse of other inputs
        rig.gpio.drive_input(FIRE, False)
        await settle()
        await rig.clock.advance(1.0)
        assert rig.gpio.level(RELAY) is True  # the driver latched it
        assert rig.door.fire_state is FireState.LATCHED  # and the controller knows
        assert rig.kinds() == ["fire_release", "security:fire_release"]
        rig.door.release("operator")
        assert rig.gpio.level(RELAY) is False


# -- precedence ----------------------------------------------------------------------


@pytest.mark.asyncio
async def test_precedence_fire_and_rex_win_over_lockdown() -> None:
    async with rig_for(fire_line=FIRE, input_min_pulse_ms=0) as rig:
        rig.door.lockdown("operator")
        rig.grant()
        await settle()
        assert rig.gpio.level(RELAY) is False  # lockdown refuses grants
        await press(rig, BUTTON, True)
        assert rig.gpio.level(RELAY) is True  # REX wins over lockdown
        await rig.clock.advance(3)
        assert rig.gpio.level(RELAY) is False
        rig.gpio.drive_input(FIRE, True)
        await settle()
        assert rig.gpio.level(RELAY) is True  # fire wins over lockdown
        rig.door.lockdown("again")  # already in lockdown: nothing changes
        rig.gpio.drive_input(FIRE, False)
        await settle()
        rig.door.release("operator")  # ends the fire latch and the lockdown
        assert rig.gpio.level(RELAY) is False
        assert not rig.door.locked_down
        kinds = rig.kinds()
        assert kinds[:4] == ["lockdown", "exit_request", "unlocked", "locked"]
        assert kinds[4:] == ["fire_release", "security:fire_release", "locked", "released"]


# -- gate-controller mode ------------------------------------------------------------


@pytest.mark.asyncio
async def test_gate_controller_mode_drives_no_relay_and_publishes_no_lock_events() -> None:
    async with rig_for(relay="none", input_min_pulse_ms=0) as rig:
        assert rig.gpio.outputs == {}
        rig.grant()
        await settle()
        with pytest.raises(DoorNoRelayError):
            await rig.door.open("remote")
        await press(rig, SENSOR, True)  # opened: not "forced" (the lock is not ours)
        await press(rig, SENSOR, False)
        await press(rig, BUTTON, True)
        await rig.clock.advance(10)
        assert rig.gpio.output_changes == []
        assert rig.kinds() == ["opened", "closed", "exit_request"]
        assert rig.door.health()["relay"] == "none"


# -- inputs --------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_inputs_shorter_than_the_minimum_pulse_are_ignored_400ms_always_counts() -> None:
    async with rig_for(input_min_pulse_ms=100) as rig:
        rig.gpio.drive_input(BUTTON, True)
        await settle()
        await rig.clock.advance(0.05)  # a 50 ms glitch
        rig.gpio.drive_input(BUTTON, False)
        await settle()
        await rig.clock.advance(1.0)
        assert rig.kinds() == [] and rig.gpio.actuations(RELAY) == 0
        rig.gpio.drive_input(BUTTON, True)  # held 400 ms: always processed
        await settle()
        await rig.clock.advance(0.4)
        rig.gpio.drive_input(BUTTON, False)
        await settle()
        await rig.clock.advance(0.4)
        assert rig.kinds() == ["exit_request", "unlocked"]


# -- start-up order ------------------------------------------------------------------


class Recorder:
    """A resource that records what the GPIO relay line read when it was opened."""

    def __init__(self, gpio: dict[str, SimulatedGpio]) -> None:
        self._gpio = gpio
        self.relay_at_open: bool | None = None

    async def __aenter__(self) -> Recorder:
        gpio = self._gpio["d"]
        assert gpio.is_open, "GPIO must be open (outputs safe) before other resources"
        self.relay_at_open = gpio.level(RELAY)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._gpio["d"].is_open, "GPIO must close after every other resource"


@pytest.mark.asyncio
async def test_gpio_outputs_are_safe_before_anything_else_opens(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The root's phase 1 opens the GPIO before the store (and closes it after)."""
    loaded = load_text(
        tmp_path,
        '[device]\nid = "gate-1"\n[recognition]\nenabled = false\n'
        '[lifecycle]\nwatchdog = false\n[gpio]\nlock_type = "fail_safe"\n',
    )
    holder: dict[str, SimulatedGpio] = {}
    recorder = Recorder(holder)

    class FakeStore:  # stands for the store only at the seam the root opens it through
        @staticmethod
        def from_config(section: object, **kw: object) -> Recorder:
            return recorder

    async def no_policy(*args: object, **kw: object) -> None:
        return None

    real_open_gpio = root.open_gpio

    async def open_gpio(ctx: root.Context, stack: AsyncExitStack) -> object:
        gpio = await real_open_gpio(ctx, stack)
        assert isinstance(gpio, SimulatedGpio)
        holder["d"] = gpio
        return gpio

    monkeypatch.setattr(root, "Store", FakeStore)
    monkeypatch.setattr(root, "open_policy", no_policy)
    monkeypatch.setattr(root, "open_gpio", open_gpio)

    async def builder(ctx: root.Context, stack: AsyncExitStack) -> root.Parts:
        res = await root.open_resources(ctx, stack)
        assert res.store is recorder
        door, services = root.door_services(ctx, res.gpio)
        return root.Parts(gpio=res.gpio, door=door, services=tuple(services), safe_outputs=(door,))

    async with Device(loaded, clock=ManualClock(), builder=builder, handle_signals=False):
        await settle()
    assert recorder.relay_at_open is False  # de-energised: the safe state
