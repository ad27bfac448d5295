"""Device lifecycle: graceful and forced shutdown, crash exits; the relay ends safe on every path."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections.abc import Callable
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
from facegate.drivers.gpio import GpioUnavailableError, SimulatedGpio
from facegate.runtime.app.device import Device
from facegate.runtime.app.root import Context, Parts, open_gpio
from facegate.runtime.clock import ManualClock
from facegate.runtime.errors import ShutdownTimeoutError
from facegate.runtime.service import ServiceState

from .util import CapturedLogs, gpio_only, load_text

RELAY = 17
CONFIG = """
[device]
id = "gate-1"
[lifecycle]
shutdown_grace_s = 5.0
watchdog = false
[gpio]
relay_line = 17
door_sensor_line = 22
lock_type = "{lock}"
"""


async def settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


class SlowCleanup:
    """A service whose cleanup outlives the graceful budget until cancelled a second time."""

    name = "slow"

    def __init__(self, gpio: Callable[[], SimulatedGpio]) -> None:
        self._gpio = gpio
        self.relay_at_second_cancel: bool | None = None

    async def run(self) -> None:
        try:
            await asyncio.Event().wait()
        finally:
            try:
                await asyncio.Event().wait()  # e.g. a flush to a dead peer
            except asyncio.CancelledError:
                self.relay_at_second_cancel = self._gpio().level(RELAY)
                raise


def sim(device: Device) -> SimulatedGpio:
    gpio = device.parts.gpio
    assert isinstance(gpio, SimulatedGpio)
    return gpio


@pytest.mark.asyncio
@pytest.mark.parametrize("lock", ["fail_secure", "fail_safe"])
async def test_sigterm_shuts_down_gracefully_into_safe_state(tmp_path: Path, lock: str) -> None:
    loaded = load_text(tmp_path, CONFIG.format(lock=lock))
    clock = ManualClock()
    device = Device(loaded, clock=clock, builder=gpio_only())
    async with device:
        await settle()
        gpio = sim(device)
        door = device.parts.door
        await door.open("test")
        assert door.unlocked
        assert gpio.level(RELAY) is (lock == "fail_secure")  # strike energised, maglock not
        os.kill(os.getpid(), signal.SIGTERM)  # a real signal through loop.add_signal_handler
        assert await asyncio.wait_for(device.wait_shutdown(), 30) == "SIGTERM"
        assert device.started.is_set()
    # Graceful: the clock never moved, so no part of the grace budget was needed.
    assert clock.monotonic() == 1000.0
    assert not device.forced
    assert gpio.level(RELAY) is False  # the safe state is always de-energised
    assert not gpio.is_open
    assert all(s.state is ServiceState.STOPPED for s in device.supervisor.status().values())
    # The signal handler is removed again.
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL or not device._signals


@pytest.mark.asyncio
async def test_forced_shutdown_enters_safe_state_first_and_is_bounded(
    tmp_path: Path, logs: CapturedLogs
) -> None:
    loaded = load_text(tmp_path, CONFIG.format(lock="fail_secure"))
    clock = ManualClock()
    holder: dict[str, Device] = {}
    slow = SlowCleanup(lambda: sim(holder["d"]))
    safe_calls: list[tuple[float, bool | None]] = []

    class Recorder:
        def enter_safe_state(self) -> None:
            safe_calls.append((clock.monotonic(), slow.relay_at_second_cancel))

    device = Device(loaded, clock=clock, builder=gpio_only(slow, outputs=(Recorder(),)), handle_signals=False)
    holder["d"] = device

    async def lifetime() -> None:
        async with device:
            await settle()
            await device.parts.door.open("test")
            device.request_shutdown("test")
            await device.wait_shutdown()

    task = asyncio.create_task(lifetime(), name="lifetime")
    for _ in range(1000):  # until the graceful stop has begun (its deadline is then fixed)
        status = device.supervisor.status().get("slow")
        if status is not None and status.state is ServiceState.STOPPING:
            break
        await asyncio.sleep(0)
    await clock.advance(4.9)
    assert not task.done()
    assert safe_calls == []  # still inside the graceful budget
    await clock.advance(0.1)  # budget over: forced path
    with pytest.raises(ShutdownTimeoutError):
        await asyncio.wait_for(task, 30)
    assert device.forced
    # The forced path entered the safe state at the end of the budget, before the
    # stragglers were cancelled again; the normal exit path then entered it again.
    assert safe_calls == [(1005.0, None), (1005.0, False)]
    assert slow.relay_at_second_cancel is False
    assert sim(device).level(RELAY) is False
    forced = logs.events("device.shutdown_forced")
    assert len(forced) == 1 and forced[0]["stuck_tasks"] == ["slow"]


@pytest.mark.asyncio
async def test_exception_in_body_still_reaches_safe_state(tmp_path: Path) -> None:
    loaded = load_text(tmp_path, CONFIG.format(lock="fail_secure"))
    device = Device(loaded, clock=ManualClock(), builder=gpio_only(), handle_signals=False)
    with pytest.raises(ZeroDivisionError):
        async with device:
            await settle()
            await device.parts.door.open("test")
            assert sim(device).level(RELAY) is True
            _ = 1 / 0
    assert sim(device).level(RELAY) is False
    assert not sim(device).is_open


@pytest.mark.asyncio
async def test_cancelled_device_task_still_reaches_safe_state(tmp_path: Path) -> None:
    loaded = load_text(tmp_path, CONFIG.format(lock="fail_secure"))
    device = Device(loaded, clock=ManualClock(), builder=gpio_only(), handle_signals=False)

    async def lifetime() -> None:
        async with device:
            await device.parts.door.open("test")
            await asyncio.Event().wait()

    task = asyncio.create_task(lifetime(), name="lifetime")
    await settle()
    assert sim(device).level(RELAY) is True
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert sim(device).level(RELAY) is False


@pytest.mark.asyncio
async def test_startup_failure_closes_opened_resources(tmp_path: Path) -> None:
    loaded = load_text(tmp_path, CONFIG.format(lock="fail_secure"))

    class Broken:
        async def __aenter__(self) -> None:
            raise GpioUnavailableError("chip busy")

        async def __aexit__(self, *exc: object) -> None:
            return None

    opened: list[SimulatedGpio] = []

    async def builder(ctx: Context, stack: AsyncExitStack) -> Parts:
        gpio = await open_gpio(ctx, stack)
        assert isinstance(gpio, SimulatedGpio)
        opened.append(gpio)
        await stack.enter_async_context(Broken())  # a later resource fails to open
        raise AssertionError("not reached")

    device = Device(loaded, clock=ManualClock(), builder=builder, handle_signals=False)
    with pytest.raises(GpioUnavailableError):
        await device.__aenter__()
    assert len(opened) == 1 and not opened[0].is_open
    assert not device.started.is_set()


@pytest.mark.asyncio
async def test_health_snapshot_reports_tasks_queues_and_uptime(tmp_path: Path) -> None:
    loaded = load_text(tmp_path, CONFIG.format(lock="fail_secure"))
    clock = ManualClock()
    device = Device(loaded, clock=clock, builder=gpio_only(), handle_signals=False)
    async with device:
        await settle()
        await clock.advance(12.5)
        snap = device.health.snapshot()
        json.dumps(snap)  # JSON-serialisable
    assert snap["device_id"] == "gate-1"
    assert snap["uptime_s"] == 12.5
    tasks = snap["tasks"]
    assert isinstance(tasks, dict)
    assert tasks["door"]["state"] == "running"
    assert tasks["gpio"]["restarts"] == 0
    queues = snap["queues"]
    assert isinstance(queues, dict) and queues["door"]["depth"] == 0
    sources = snap["sources"]
    assert isinstance(sources, dict) and sources["door"]["relay"] == "locked"
    assert snap["started_at"] == "2026-01-01T00:00:00.000Z"


@pytest.mark.asyncio
async def test_second_shutdown_request_forces_without_waiting(tmp_path: Path) -> None:
    loaded = load_text(tmp_path, CONFIG.format(lock="fail_secure"))
    clock = ManualClock()
    holder: dict[str, Device] = {}
    slow = SlowCleanup(lambda: sim(holder["d"]))
    device = Device(loaded, clock=clock, builder=gpio_only(slow), handle_signals=False)
    holder["d"] = device

    async def lifetime() -> None:
        async with device:
            device.request_shutdown("SIGINT")
            await device.wait_shutdown()

    task = asyncio.create_task(lifetime(), name="lifetime")
    for _ in range(1000):
        status = device.supervisor.status().get("slow")
        if status is not None and status.state is ServiceState.STOPPING:
            break
        await asyncio.sleep(0)
    assert not task.done()
    device.request_shutdown("SIGINT")  # the impatient second Ctrl-C
    with pytest.raises(ShutdownTimeoutError):
        await asyncio.wait_for(task, 30)
    assert clock.monotonic() == 1000.0  # no budget was waited for
    assert slow.relay_at_second_cancel is False


@pytest.mark.asyncio
async def test_serve_runs_its_body_as_a_named_task(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from facegate.runtime.app.cli import run_cmd  # noqa: PLC0415  # the module under test

    loaded = load_text(tmp_path, CONFIG.format(lock="fail_secure"))

    def device(cfg: object, **kw: object) -> Device:
        return Device(loaded, builder=gpio_only(), handle_signals=False)

    monkeypatch.setattr(run_cmd, "Device", device)
    seen: list[str] = []

    async def body(dev: Device) -> None:
        task = asyncio.current_task()
        assert task is not None
        seen.append(task.get_name())
        dev.request_shutdown("body done")

    assert await run_cmd.serve(loaded, body=body) == 0
    assert seen == ["run.body"]
