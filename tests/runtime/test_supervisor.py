"""Task supervision: crash -> restart with capped jittered backoff, state changes logged once."""

from __future__ import annotations

import asyncio
import itertools
import random

import pytest
from facegate.runtime.app.supervisor import Supervisor, SupervisorError
from facegate.runtime.bus import EventBus
from facegate.runtime.clock import ManualClock
from facegate.runtime.events import ComponentStateChanged
from facegate.runtime.service import ServiceState

from .util import CapturedLogs


class Flaky:
    """Crashes ``crashes`` times, then runs until cancelled."""

    def __init__(self, crashes: int, name: str = "flaky") -> None:
        self.crashes = crashes
        self.runs = 0
        self.cancelled = False
        self._name = name
        self.healthy = asyncio.Event()

    @property
    def name(self) -> str:
        return self._name

    async def run(self) -> None:
        self.runs += 1
        if self.runs <= self.crashes:
            raise ConnectionError(f"boom {self.runs}")
        self.healthy.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled = True
            raise


class Finishes:
    name = "oneshot"

    def __init__(self) -> None:
        self.runs = 0

    async def run(self) -> None:
        self.runs += 1


async def settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


@pytest.mark.asyncio
async def test_crashed_service_restarts_after_backoff_not_before(logs: CapturedLogs) -> None:
    clock = ManualClock()
    svc = Flaky(crashes=3)
    sup = Supervisor(
        clock=clock, restart_min_s=1.0, restart_max_s=4.0, rng=random.Random(7)
    )
    sup.add(svc)
    async with sup:
        await settle()
        assert svc.runs == 1
        assert sup.status()["flaky"].state is ServiceState.BACKOFF
        # Delays are capped at 4 s each: three restarts happen within 3 * 4 s.
        for _ in range(12):
            await clock.advance(1.0)
        await asyncio.wait_for(svc.healthy.wait(), 1)
        status = sup.status()["flaky"]
        assert svc.runs == 4
        assert status.state is ServiceState.RUNNING
        assert status.restarts == 3
        assert status.crashes == 3
        assert status.last_error == "ConnectionError"
        assert status.failing
    assert svc.cancelled
    assert sup.status()["flaky"].state is ServiceState.STOPPED


@pytest.mark.asyncio
async def test_backoff_delays_are_capped_and_jittered() -> None:
    clock = ManualClock()
    svc = Flaky(crashes=50)
    sup = Supervisor(clock=clock, restart_min_s=0.5, restart_max_s=2.0, rng=random.Random(1))
    sup.add(svc)
    async with sup:
        await settle()
        starts: list[float] = []
        last = svc.runs
        for _ in range(400):
            await clock.advance(0.05)
            if svc.runs != last:
                last = svc.runs
                starts.append(clock.monotonic())
            if len(starts) >= 12:
                break
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert gaps, "service was never restarted"
    assert max(gaps) <= 2.0 + 0.05 + 1e-9
    # After the first attempt, full jitter never goes below the base delay.
    assert min(gaps[1:]) >= 0.5 - 1e-9
    assert len({round(g, 2) for g in gaps}) > 1, "delays are not jittered"


@pytest.mark.asyncio
async def test_state_change_logged_once_per_failure_episode(logs: CapturedLogs) -> None:
    clock = ManualClock()
    bus = EventBus()
    svc = Flaky(crashes=5)
    sup = Supervisor(
        clock=clock, bus=bus, restart_min_s=0.1, restart_max_s=0.2, healthy_after_s=10.0
    )
    sup.add(svc)
    async with bus.subscribe(ComponentStateChanged, name="t", maxsize=100) as changes, sup:
        await settle()
        for _ in range(20):
            await clock.advance(0.2)
        await asyncio.wait_for(svc.healthy.wait(), 1)
        assert sup.status()["flaky"].restarts == 5
        await clock.advance(10.0)
        states = []
        while (ev := changes.get_nowait()) is not None:
            states.append(ev.state)
    assert len(logs.events("service.crashed")) == 1
    crashed = logs.events("service.crashed")[0]
    assert crashed["task_name"] == "flaky"
    assert crashed["error_type"] == "ConnectionError"
    assert len(logs.events("service.recovered")) == 1
    assert len(logs.events("service.started")) == 1
    assert states == ["running", "backoff", "recovered"]
    assert not sup.status()["flaky"].failing


@pytest.mark.asyncio
async def test_new_episode_after_recovery_is_logged_again(logs: CapturedLogs) -> None:
    clock = ManualClock()

    class CrashEvery:
        name = "periodic"

        def __init__(self) -> None:
            self.runs = 0

        async def run(self) -> None:
            self.runs += 1
            await clock.sleep(20.0)  # healthy for 20 s, then crash
            raise OSError("sensor gone")

    svc = CrashEvery()
    sup = Supervisor(clock=clock, restart_min_s=0.5, restart_max_s=0.5, healthy_after_s=10.0)
    sup.add(svc)
    async with sup:
        await settle()
        for _ in range(120):  # 60 s: crashes at 20 and 40.5, recoveries at 30.5 and 51
            await clock.advance(0.5)
    assert svc.runs == 3
    # Each crash comes after a healthy period: each is a new episode, logged once.
    assert len(logs.events("service.crashed")) == 2
    assert len(logs.events("service.recovered")) == 2


@pytest.mark.asyncio
async def test_normal_return_ends_service_without_restart(logs: CapturedLogs) -> None:
    clock = ManualClock()
    svc = Finishes()
    sup = Supervisor(clock=clock)
    sup.add(svc)
    async with sup:
        await settle()
        await clock.advance(60.0)
        assert svc.runs == 1
        assert sup.status()["oneshot"].state is ServiceState.STOPPED
    assert len(logs.events("service.finished")) == 1


@pytest.mark.asyncio
async def test_tasks_are_named_after_services() -> None:
    clock = ManualClock()
    sup = Supervisor(clock=clock)
    sup.add(Flaky(0, name="camera"))
    sup.add(Flaky(0, name="mqtt.link"))
    with pytest.raises(SupervisorError):
        sup.add(Flaky(0, name="camera"))
    async with sup:
        await settle()
        names = {t.get_name() for t in asyncio.all_tasks()}
        assert {"camera", "mqtt.link"} <= names


@pytest.mark.asyncio
async def test_stop_reports_tasks_that_outlive_the_budget() -> None:
    clock = ManualClock()
    release = asyncio.Event()

    class Stubborn:
        name = "stubborn"

        async def run(self) -> None:
            try:
                await asyncio.Event().wait()
            finally:
                await release.wait()  # slow cleanup; a second cancel interrupts it

    sup = Supervisor(clock=clock)
    sup.add(Stubborn())
    sup.add(Flaky(0, name="polite"))
    async with sup:
        await settle()
        stopping = asyncio.create_task(sup.stop(5.0))
        await settle()
        assert sup.status()["stubborn"].state is ServiceState.STOPPING
        assert sup.status()["polite"].state is ServiceState.STOPPED
        await clock.advance(4.9)
        assert not stopping.done()
        await clock.advance(0.1)
        assert await stopping == ["stubborn"]
        sup.cancel_all()  # the forced path: interrupts the stuck cleanup
    assert sup.status()["stubborn"].state is ServiceState.STOPPED


def _stop_timer() -> asyncio.Task[object] | None:
    for t in asyncio.all_tasks():
        if getattr(t.get_coro(), "__qualname__", "") == "Supervisor._sleep_until":
            return t
    return None


@pytest.mark.asyncio
async def test_stop_helpers_are_named_tasks() -> None:
    clock = ManualClock()
    abort = asyncio.Event()
    release = asyncio.Event()

    class Stubborn:
        name = "stubborn"

        async def run(self) -> None:
            try:
                await asyncio.Event().wait()
            finally:
                await release.wait()

    sup = Supervisor(clock=clock)
    sup.add(Stubborn())
    async with sup:
        await settle()
        stopping = asyncio.create_task(sup.stop(5.0, abort=abort), name="test.stopping")
        await settle()
        me = asyncio.current_task()
        unnamed = sorted(
            t.get_name() for t in asyncio.all_tasks() if t is not me and t.get_name().startswith("Task-")
        )
        assert unnamed == []
        abort.set()
        assert await stopping == ["stubborn"]
        release.set()


@pytest.mark.asyncio
async def test_cancelling_stop_during_its_cleanup_is_not_swallowed() -> None:
    """stop() reaps its timer in a finally; a cancel arriving then must still propagate."""
    clock = ManualClock()
    sup = Supervisor(clock=clock)
    sup.add(Flaky(0, name="polite"))
    async with sup:
        await settle()
        stopping = asyncio.create_task(sup.stop(5.0), name="test.stopping")
        for _ in range(50):
            await asyncio.sleep(0)
            timer = _stop_timer()
            if timer is not None and timer.cancelling() and not timer.done():
                break
        else:
            pytest.fail("stop() never reached its cleanup")
        stopping.cancel()
        with pytest.raises(asyncio.CancelledError):
            await stopping
