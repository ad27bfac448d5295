"""Door control on a simulated GPIO chip: relay pulses, door contact, exit button, lockdown."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import pytest_asyncio
from facegate.drivers.gpio import GpioInputWatcher, SimulatedGpio, build_driver
from facegate.handlers.door import DoorController, DoorLockedDownError, DoorNotRunningError
from facegate.runtime.bus import EventBus, Subscription
from facegate.runtime.clock import ManualClock
from facegate.runtime.config.gpio import GpioSection
from facegate.runtime.events import (
    AccessDecision,
    Decision,
    DoorEvent,
    SecurityEvent,
)

RELAY, SENSOR, BUTTON = 17, 22, 23


@dataclass
class Rig:
    clock: ManualClock
    bus: EventBus
    gpio: SimulatedGpio
    door: DoorController
    events: Subscription[DoorEvent | SecurityEvent]

    def kinds(self) -> list[str]:
        out = []
        while (ev := self.events.get_nowait()) is not None:
            out.append(ev.kind.value if isinstance(ev, DoorEvent) else f"security:{ev.kind.value}")
        return out

    def grant(self, event_id: str = "d1", decision: Decision = Decision.GRANTED) -> None:
        self.bus.publish(
            AccessDecision(
                at=self.clock.wall(),
                event_id=event_id,
                decision=decision,
                reason="match",
                subject_id="s-1",
                score=0.7,
                runner_up=0.2,
                margin=0.5,
                threshold=0.4,
            )
        )


async def settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


@pytest_asyncio.fixture
async def rig(request: pytest.FixtureRequest) -> AsyncIterator[Rig]:
    overrides = getattr(request, "param", {})
    section = GpioSection(
        relay_line=RELAY,
        door_sensor_line=SENSOR,
        exit_button_line=BUTTON,
        unlock_s=3.0,
        held_open_s=30.0,
        **overrides,
    )
    clock = ManualClock()
    bus = EventBus()
    gpio = build_driver(section, clock)
    assert isinstance(gpio, SimulatedGpio)
    door = DoorController(section, gpio, bus, clock)
    watcher = GpioInputWatcher(gpio, bus, clock)
    async with gpio, bus.subscribe(DoorEvent, SecurityEvent, name="t", maxsize=64) as sub:
        tasks = [
            asyncio.create_task(door.run(), name="door"),
            asyncio.create_task(watcher.run(), name="gpio"),
        ]
        await settle()
        yield Rig(clock, bus, gpio, door, sub)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


@pytest.mark.asyncio
async def test_grant_pulses_relay_for_unlock_s(rig: Rig) -> None:
    assert rig.gpio.level(RELAY) is False
    rig.grant("dec-1")
    await settle()
    assert rig.gpio.level(RELAY) is True
    await rig.clock.advance(2.9)
    assert rig.gpio.level(RELAY) is True
    await rig.clock.advance(0.1)
    assert rig.gpio.level(RELAY) is False
    assert rig.gpio.actuations(RELAY) == 1
    assert rig.kinds() == ["unlocked", "locked"]


@pytest.mark.asyncio
async def test_non_granted_decisions_do_not_actuate(rig: Rig) -> None:
    for d in (Decision.DENIED, Decision.UNKNOWN, Decision.UNDECIDED):
        rig.grant(decision=d)
    await settle()
    await rig.clock.advance(10)
    assert rig.gpio.actuations(RELAY) == 0
    assert rig.kinds() == []


@pytest.mark.asyncio
async def test_second_grant_extends_the_window_with_one_actuation(rig: Rig) -> None:
    rig.grant("a")
    await settle()
    await rig.clock.advance(2.0)
    rig.grant("b")
    await settle()
    await rig.clock.advance(2.0)
    assert rig.gpio.level(RELAY) is True
    await rig.clock.advance(1.0)
    assert rig.gpio.level(RELAY) is False
    assert rig.gpio.actuations(RELAY) == 1


@pytest.mark.asyncio
async def test_open_close_relocks_and_forced_raises_security_event(rig: Rig) -> None:
    rig.grant()
    await settle()
    rig.gpio.drive_input(SENSOR, True)
    await settle()
    rig.gpio.drive_input(SENSOR, False)
    await settle()
    assert rig.gpio.level(RELAY) is False  # relock on close, before unlock_s
    assert rig.kinds() == ["unlocked", "opened", "closed", "locked"]
    rig.gpio.drive_input(SENSOR, True)  # opened while locked
    await settle()
    kinds = rig.kinds()
    assert kinds == ["forced", "security:door_forced"]
    assert rig.door.health()["forced"] == 1


@pytest.mark.asyncio
async def test_held_open_reported_once(rig: Rig) -> None:
    rig.grant()
    await settle()
    rig.gpio.drive_input(SENSOR, True)
    await settle()
    await rig.clock.advance(29.0)
    assert "held_open" not in rig.kinds()
    await rig.clock.advance(1.0)
    await rig.clock.advance(60.0)
    assert rig.kinds().count("held_open") == 1


@pytest.mark.asyncio
async def test_exit_button_unlocks_even_in_lockdown(rig: Rig) -> None:
    rig.door.lockdown("test")
    rig.gpio.drive_input(BUTTON, True)
    await settle()
    assert rig.gpio.level(RELAY) is True
    assert rig.kinds() == ["lockdown", "exit_request", "unlocked"]


@pytest.mark.asyncio
async def test_lockdown_refuses_grants_and_remote_open_until_release(rig: Rig) -> None:
    rig.door.lockdown("operator")
    rig.grant()
    await settle()
    assert rig.gpio.level(RELAY) is False
    with pytest.raises(DoorLockedDownError):
        await rig.door.open("remote")
    rig.door.release("operator")
    await rig.door.open("remote")
    assert rig.gpio.level(RELAY) is True
    assert rig.kinds() == ["lockdown", "released", "unlocked"]
    assert rig.door.health()["refused"] == 2


@pytest.mark.asyncio
async def test_lockdown_during_unlock_locks_at_once(rig: Rig) -> None:
    rig.grant()
    await settle()
    rig.door.lockdown()
    assert rig.gpio.level(RELAY) is False
    await rig.clock.advance(5)
    assert rig.kinds() == ["unlocked", "locked", "lockdown"]


@pytest.mark.asyncio
@pytest.mark.parametrize("rig", [{"lock_type": "fail_safe"}], indirect=True)
async def test_fail_safe_door_locks_while_running_and_unlocks_on_exit(rig: Rig) -> None:
    assert rig.gpio.level(RELAY) is True  # running: maglock energised = locked
    rig.door.enter_safe_state()
    assert rig.gpio.level(RELAY) is False  # de-energised = released
    rig.door.enter_safe_state()  # idempotent
    assert rig.gpio.actuations(RELAY, to=False) == 1


@pytest.mark.asyncio
async def test_crash_exit_enters_safe_state() -> None:
    clock = ManualClock()
    bus = EventBus()
    section = GpioSection(relay_line=RELAY)
    gpio = build_driver(section, clock)
    assert isinstance(gpio, SimulatedGpio)
    door = DoorController(section, gpio, bus, clock)
    with pytest.raises(DoorNotRunningError):
        await door.open("too-early")
    async with gpio:
        task = asyncio.create_task(door.run(), name="door")
        await settle()
        await door.open("cmd")
        assert gpio.level(RELAY) is True
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert gpio.level(RELAY) is False


@pytest.mark.asyncio
async def test_remote_open_while_the_controller_stops_is_refused_and_never_unlocks() -> None:
    """open() racing run()'s exit (its TaskGroup is cancelling the held-open timer).

    The controller still looks running, but no relock timer can be started any
    more: the command must get the typed DoorNotRunningError and the relay must
    not be energised (before the fix: a bare RuntimeError after unlocking).
    """
    clock = ManualClock()
    bus = EventBus()
    section = GpioSection(relay_line=RELAY, door_sensor_line=SENSOR)
    gpio = build_driver(section, clock)
    assert isinstance(gpio, SimulatedGpio)
    door = DoorController(section, gpio, bus, clock)
    async with gpio:
        gpio.drive_input(SENSOR, True)  # door open at start: a held-open timer task is pending
        task = asyncio.create_task(door.run(), name="door")
        await settle()
        task.cancel()
        await asyncio.sleep(0)  # run() is now inside its TaskGroup's exit, awaiting the timer
        assert not task.done()
        with pytest.raises(DoorNotRunningError):
            await door.open("late")
        assert gpio.actuations(RELAY) == 0
        with pytest.raises(asyncio.CancelledError):
            await task
        assert gpio.level(RELAY) is False
        assert gpio.actuations(RELAY) == 0
