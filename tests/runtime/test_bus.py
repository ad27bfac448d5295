"""Bus overflow policies: latest-wins (frames, best-effort events) and never-drop (an error, counted)."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from facegate.runtime.bus import EventBus
from facegate.runtime.events import (
    AccessDecision,
    ComponentStateChanged,
    Decision,
    FrameCaptured,
    Overflow,
    SecurityEvent,
    SecurityKind,
)

from .util import CapturedLogs


def frame(seq: int) -> FrameCaptured:
    return FrameCaptured(
        at=float(seq),
        image=np.full((4, 4, 3), seq, dtype=np.uint8),
        seq=seq,
        source="sim",
        monotonic=float(seq),
    )


def decision(n: int) -> AccessDecision:
    return AccessDecision(
        at=float(n),
        event_id=f"d{n}",
        decision=Decision.GRANTED,
        reason="match",
        subject_id=None,
        score=None,
        runner_up=None,
        margin=None,
        threshold=0.5,
    )


@pytest.mark.asyncio
async def test_frames_are_latest_wins() -> None:
    bus = EventBus()
    async with bus.subscribe(FrameCaptured, name="recognition", maxsize=2) as sub:
        for i in range(5):
            bus.publish(frame(i))
        assert [(await sub.get()).seq for _ in range(2)] == [3, 4]
        assert sub.stats.dropped == 3
        assert bus.snapshot()["recognition"] == {
            "depth": 0,
            "delivered": 2,
            "dropped": 3,
            "overflow_errors": 0,
        }


@pytest.mark.asyncio
async def test_best_effort_events_drop_oldest() -> None:
    bus = EventBus()
    assert ComponentStateChanged.overflow is Overflow.LATEST_WINS
    async with bus.subscribe(ComponentStateChanged, name="link", maxsize=3) as sub:
        for i in range(10):
            bus.publish(ComponentStateChanged(at=float(i), component="camera", state="streaming"))
        got = [sub.get_nowait() for _ in range(4)]
    assert [e.at for e in got if e is not None] == [7.0, 8.0, 9.0]
    assert got[3] is None
    assert sub.stats.dropped == 7


@pytest.mark.asyncio
async def test_never_drop_overflow_is_logged_as_error_and_counted(logs: CapturedLogs) -> None:
    bus = EventBus()
    async with bus.subscribe(AccessDecision, name="outbox", maxsize=2) as sub:
        for i in range(5):
            bus.publish(decision(i))
        # The queued events are the first ones: nothing already accepted was displaced.
        assert [(await sub.get()).event_id for _ in range(2)] == ["d0", "d1"]
        assert sub.stats.dropped == 0
        assert sub.stats.overflow_errors == 3
    errors = logs.events("bus.overflow")
    assert len(errors) == 3
    assert all(e["level"] == "error" for e in errors)
    assert errors[0]["subscriber"] == "outbox"
    assert errors[0]["event_type"] == "AccessDecision"
    assert errors[-1]["overflow_errors"] == 3


@pytest.mark.asyncio
async def test_mixed_subscription_never_displaces_never_drop_events() -> None:
    bus = EventBus()
    async with bus.subscribe(FrameCaptured, SecurityEvent, name="mixed", maxsize=2) as sub:
        bus.publish(SecurityEvent(at=0.0, kind=SecurityKind.TAMPER, detail="case opened"))
        bus.publish(frame(1))
        bus.publish(frame(2))  # full: displaces frame 1, not the security event
        assert sub.stats.dropped == 1
        bus.publish(SecurityEvent(at=1.0, kind=SecurityKind.TAMPER, detail="again"))
        assert sub.stats.overflow_errors == 1  # refused, logged and counted
        got = [sub.get_nowait(), sub.get_nowait()]
        assert isinstance(got[0], SecurityEvent) and got[0].detail == "case opened"
        assert isinstance(got[1], FrameCaptured) and got[1].seq == 2
        # A queue holding only never-drop events drops the new droppable event instead.
        bus.publish(SecurityEvent(at=2.0, kind=SecurityKind.TAMPER, detail="x"))
        bus.publish(SecurityEvent(at=3.0, kind=SecurityKind.TAMPER, detail="y"))
        bus.publish(frame(3))
        assert sub.stats.dropped == 2
        kept = [sub.get_nowait(), sub.get_nowait()]
        assert [e.detail for e in kept if isinstance(e, SecurityEvent)] == ["x", "y"]


@pytest.mark.asyncio
async def test_subscriber_only_sees_its_types_and_unsubscribes() -> None:
    bus = EventBus()
    async with bus.subscribe(AccessDecision, name="a", maxsize=4) as sub:
        bus.publish(frame(1))
        bus.publish(decision(1))
        ev = await asyncio.wait_for(sub.get(), 1)
        assert isinstance(ev, AccessDecision)
        assert sub.depth == 0
    assert "a" not in bus.snapshot()


@pytest.mark.asyncio
async def test_never_drop_overflow_raises_one_bus_overflow_incident_per_episode() -> None:
    from facegate.runtime.events import AccessDecision, Decision, SecurityEvent, SecurityKind  # noqa: PLC0415

    bus = EventBus()

    def decision(i: int) -> AccessDecision:
        return AccessDecision(
            at=float(i),
            event_id=f"e{i}",
            decision=Decision.UNKNOWN,
            reason="x",
            subject_id=None,
            score=None,
            runner_up=None,
            margin=None,
            threshold=0.5,
        )

    async with (
        bus.subscribe(SecurityEvent, name="incidents", maxsize=16) as security,
        bus.subscribe(AccessDecision, SecurityEvent, name="slow", maxsize=1) as slow,
    ):
        for i in range(4):
            bus.publish(decision(i))  # 3 lost: one incident, not three
        raised = [security.get_nowait() for _ in range(security.depth)]
        assert [e.kind for e in raised if e is not None] == [SecurityKind.BUS_OVERFLOW]
        assert raised[0] is not None and "slow" in raised[0].detail and raised[0].source == "bus"
        while slow.get_nowait() is not None:  # drained: the episode is over
            pass
        bus.publish(decision(5))
        bus.publish(decision(6))  # a new episode: a new incident
        assert security.depth == 1 and slow.stats.overflow_errors == 4
