"""The one generic state keeper (runtime/state.py): logged once per real change, published, thread-safe."""

from __future__ import annotations

import enum
import threading

import pytest
from facegate.runtime.bus import EventBus
from facegate.runtime.clock import SystemClock
from facegate.runtime.events import ComponentStateChanged
from facegate.runtime.state import StateChange, StateKeeper


class Light(enum.Enum):
    OFF = "off"
    ON = "on"
    BLINK = "blink"


@pytest.mark.asyncio
async def test_each_real_change_is_logged_and_published_once() -> None:
    bus = EventBus()
    logged: list[StateChange[Light]] = []
    async with bus.subscribe(ComponentStateChanged, name="t", maxsize=16) as sub:
        keeper = StateKeeper(Light.OFF, component="lamp", log=logged.append, bus=bus, clock=SystemClock())
        assert keeper.set(Light.OFF) is None  # no change: nothing logged or published
        change = keeper.set(Light.ON, "switched")
        assert change == StateChange("lamp", Light.OFF, Light.ON, "switched")
        assert keeper.set(Light.ON, "again") is None
        keeper.set(Light.BLINK)
        published = []
        while (ev := sub.get_nowait()) is not None:
            published.append((ev.component, ev.state, ev.detail))
    assert keeper.state is Light.BLINK and keeper.changes == 2
    assert [(c.old, c.new) for c in logged] == [(Light.OFF, Light.ON), (Light.ON, Light.BLINK)]
    assert published == [("lamp", "on", "switched"), ("lamp", "blink", "")]


def test_threads_racing_to_one_state_log_it_once() -> None:
    logged: list[StateChange[Light]] = []
    keeper = StateKeeper(Light.OFF, component="lamp", log=logged.append)
    barrier = threading.Barrier(8)

    def flip() -> None:
        barrier.wait()
        for _ in range(200):
            keeper.set(Light.ON)

    threads = [threading.Thread(target=flip) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert keeper.state is Light.ON and len(logged) == 1 and keeper.changes == 1


def test_a_publishing_keeper_needs_a_clock() -> None:
    with pytest.raises(ValueError, match="clock"):
        StateKeeper(Light.OFF, component="lamp", log=lambda _c: None, bus=EventBus())
