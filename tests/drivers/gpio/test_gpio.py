"""GPIO drivers: the simulated chip, the gpiod driver's failure modes, the input watcher."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
import time
from pathlib import Path

import pytest
from facegate.drivers.gpio import (
    GpioClosedError,
    GpiodGpio,
    GpioInputChanged,
    GpioInputWatcher,
    GpioLineError,
    GpioUnavailableError,
    SimulatedGpio,
    build_driver,
    relay_level,
)
from facegate.runtime.bus import EventBus
from facegate.runtime.clock import ManualClock, SystemClock
from facegate.runtime.config.gpio import GpioSection


@pytest.mark.asyncio
async def test_simulated_outputs_record_every_change() -> None:
    clock = ManualClock()
    gpio = SimulatedGpio(outputs={17: False}, inputs=[4], clock=clock)
    with pytest.raises(GpioClosedError):
        gpio.set_output(17, True)
    async with gpio:
        gpio.set_output(17, True)
        gpio.set_output(17, True)  # no change, not recorded
        await clock.advance(1.5)
        gpio.set_output(17, False)
        assert gpio.level(17) is False
        assert [(c.high, c.monotonic) for c in gpio.output_changes] == [(True, 1000.0), (False, 1001.5)]
        assert gpio.actuations(17) == 1
        with pytest.raises(GpioLineError):
            gpio.set_output(4, True)
        with pytest.raises(GpioLineError):
            gpio.read_input(17)
    assert not gpio.is_open


@pytest.mark.asyncio
async def test_simulated_inputs_produce_edges_in_order() -> None:
    clock = ManualClock()
    gpio = SimulatedGpio(outputs={}, inputs=[4, 5], clock=clock, initial_inputs={5: True})
    async with gpio:
        assert gpio.read_input(5) is True
        gpio.drive_input(4, True)
        gpio.drive_input(4, True)  # unchanged level: no edge
        gpio.drive_input(5, False)
        edges = gpio.edges()
        got = [await anext(edges), await anext(edges)]
        await edges.aclose()
    assert [(e.line, e.high) for e in got] == [(4, True), (5, False)]


def test_lines_cannot_be_input_and_output() -> None:
    with pytest.raises(GpioLineError):
        SimulatedGpio(outputs={3: False}, inputs=[3], clock=ManualClock())


def test_driver_from_config_starts_relay_in_safe_state() -> None:
    clock = ManualClock()
    fail_secure = build_driver(GpioSection(relay_line=2, door_sensor_line=3), clock)
    assert isinstance(fail_secure, SimulatedGpio)
    assert fail_secure.outputs == {2: False} and fail_secure.inputs == (3,)
    fail_safe = build_driver(GpioSection(relay_line=2, lock_type="fail_safe"), clock)
    assert fail_safe.outputs == {2: False}  # de-energised: the maglock is released
    assert relay_level(GpioSection(lock_type="fail_safe"), unlocked=False) is True
    assert relay_level(GpioSection(lock_type="fail_secure"), unlocked=True) is True
    no_relay = build_driver(GpioSection(relay="none", door_sensor_line=3), clock)
    assert no_relay.outputs == {} and no_relay.inputs == (3,)


@pytest.mark.skipif(importlib.util.find_spec("gpiod") is None, reason="optional gpiod extra missing")
@pytest.mark.asyncio
async def test_gpiod_missing_chip_is_a_clear_error(tmp_path: Path) -> None:
    section = GpioSection(driver="gpiod", chip=tmp_path / "gpiochip9")
    driver = build_driver(section, ManualClock())
    assert isinstance(driver, GpiodGpio)
    with pytest.raises(GpioUnavailableError, match="gpiochip9"):
        await driver.open()
    with pytest.raises(GpioClosedError):
        driver.set_output(section.relay_line, True)


@pytest.mark.asyncio
async def test_gpiod_missing_package_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    # A None entry in sys.modules makes `import gpiod` raise ImportError.
    monkeypatch.setitem(sys.modules, "gpiod", None)
    driver = GpiodGpio(chip=Path("/dev/gpiochip0"), outputs={1: False}, inputs=[], clock=ManualClock())
    with pytest.raises(GpioUnavailableError, match=r"facegate\[gpio\]"):
        await driver.open()
    with pytest.raises(GpioClosedError):  # never opened: a typed error, not an AttributeError
        driver.set_output(1, False)


GPIO_SIM_SKIP = (
    "no GPIO chip on this machine (/dev/gpiochip0 absent; load gpio-sim and configure a bank "
    "to run the gpiod backend against it)"
    if not Path("/dev/gpiochip0").exists()
    else "the optional gpiod package is not installed"
)


@pytest.mark.skipif(
    importlib.util.find_spec("gpiod") is None or not Path("/dev/gpiochip0").exists(),
    reason=GPIO_SIM_SKIP,
)
@pytest.mark.asyncio
async def test_gpiod_real_chip_claims_and_drives_lines() -> None:
    driver = GpiodGpio(chip=Path("/dev/gpiochip0"), outputs={0: False}, inputs=[], clock=SystemClock())
    async with driver:
        driver.set_output(0, True)
        driver.set_output(0, False)
        # The driver's pulse thread ends the pulse while the loop is blocked.
        driver.pulse(0, True, 0.2)
        time.sleep(0.5)  # noqa: ASYNC251  # blocking the loop on purpose
        assert driver._req().get_value(0) == driver._gpiod.line.Value.INACTIVE


@pytest.mark.asyncio
async def test_input_watcher_publishes_never_drop_events() -> None:
    clock = ManualClock()
    bus = EventBus()
    gpio = SimulatedGpio(outputs={}, inputs=[4], clock=clock)
    watcher = GpioInputWatcher(gpio, bus, clock)
    async with gpio, bus.subscribe(GpioInputChanged, name="t", maxsize=8) as sub:
        task = asyncio.create_task(watcher.run(), name="gpio")
        gpio.drive_input(4, True)
        gpio.drive_input(4, False)
        first = await asyncio.wait_for(sub.get(), 1)
        second = await asyncio.wait_for(sub.get(), 1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert (first.line, first.high, second.high) == (4, True, False)
    assert first.at == clock.wall()
