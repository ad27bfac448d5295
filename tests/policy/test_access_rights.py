"""Authorisation in the match path on a real encrypted store: validity dates and schedules,
and the retention sweep erasing subjects whose validity ended (visitor passes)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json

import pytest
from facegate.handlers.access import AntiPassback, Authoriser, store_lookup
from facegate.handlers.commands import first_error
from facegate.handlers.recognition.matcher import Matcher
from facegate.handlers.reporting.codec import EventCodec
from facegate.policy import Policy, sweep
from facegate.runtime.bus import EventBus
from facegate.runtime.clock import ManualClock
from facegate.runtime.config.access import AccessSection, ScheduleSection
from facegate.runtime.events import AccessDecision, Decision, SecurityEvent, SecurityKind

from .conftest import DAY, MODEL, consent_adult, embeddings

SECTION = AccessSection(
    enabled=True,
    timezone="Europe/Berlin",
    schedules={"office": ScheduleSection(windows=("mon-fri 07:00-19:00",), holidays=("2026-12-25",))},
    groups={"staff": "office"},
)


def granted(subject: str, at: float) -> AccessDecision:
    return AccessDecision(
        at=at, event_id=f"e-{subject}", decision=Decision.GRANTED, reason="match",
        subject_id=subject, score=0.8, runner_up=0.1, margin=0.7, threshold=0.4,
    )


def berlin(*args: int) -> float:
    return dt.datetime(*args, tzinfo=dt.timezone(dt.timedelta(hours=1))).timestamp()  # type: ignore[misc]  # December: CET


async def enrol(policy: Policy, sid: str, seed: int, **attrs: str) -> None:
    await consent_adult(policy, sid)
    await policy.enrol_subject(sid, embeddings(1, seed=seed), MODEL, actor="op", attributes=attrs)


@pytest.mark.asyncio
async def test_validity_and_schedule_are_enforced_in_the_match_path(policy: Policy) -> None:
    await enrol(policy, "V1", 1, valid_from="2026-12-10", valid_until="2026-12-11")
    await enrol(policy, "S1", 2, access_group="staff")
    await enrol(policy, "P1", 3)  # no group, no dates: not limited
    auth = Authoriser(SECTION, store_lookup(policy.store))
    wed_noon = berlin(2026, 12, 9, 12, 0)
    out = await auth.authorise(granted("V1", wed_noon))
    assert (out.decision, out.reason) == (Decision.DENIED, "not_valid_yet")
    assert (await auth.authorise(granted("V1", berlin(2026, 12, 11, 23, 59)))).decision is Decision.GRANTED
    out = await auth.authorise(granted("V1", berlin(2026, 12, 12, 0, 0)))
    assert (out.decision, out.reason) == (Decision.DENIED, "expired")
    assert (await auth.authorise(granted("S1", wed_noon))).decision is Decision.GRANTED
    out = await auth.authorise(granted("S1", berlin(2026, 12, 9, 20, 0)))
    assert (out.decision, out.reason, out.schedule) == (Decision.DENIED, "outside_schedule", "office")
    out = await auth.authorise(granted("S1", berlin(2026, 12, 25, 12, 0)))  # holiday
    assert out.reason == "outside_schedule"
    assert (await auth.authorise(granted("P1", berlin(2026, 12, 25, 3, 0)))).decision is Decision.GRANTED
    body = json.loads(EventCodec("gate-1").encode(out).payload)
    assert body["decision"] == "denied" and body["schedule"] == "office"
    assert body["reason"] == "outside_schedule"
    assert first_error("event_access", body) is None
    assert auth.refused == {"not_valid_yet": 1, "expired": 1, "outside_schedule": 2}


@pytest.mark.asyncio
async def test_sweep_erases_subjects_whose_validity_ended(
    policy: Policy, matcher: Matcher, clock: ManualClock
) -> None:
    today = dt.datetime.fromtimestamp(clock.wall(), tz=dt.UTC).date()
    await enrol(policy, "VIS", 4, valid_until=today.isoformat())
    await enrol(policy, "EMP", 5, valid_until=(today + dt.timedelta(days=30)).isoformat())
    report = await sweep(policy)
    assert report.counts.get("erased_validity_ended", 0) == 0
    await clock.advance(2 * DAY)
    report = await sweep(policy)
    assert report.counts["erased_validity_ended"] == 1
    assert not matcher.has_subject("VIS") and matcher.has_subject("EMP")


@pytest.mark.asyncio
@pytest.mark.parametrize("mode", ["hard", "soft"])
async def test_anti_passback_per_direction_with_timeout(
    policy: Policy, clock: ManualClock, mode: str
) -> None:
    await enrol(policy, "A1", 6)
    section = dataclasses.replace(
        SECTION, direction="entry", anti_passback=mode, anti_passback_timeout_s=600.0
    )
    bus = EventBus()
    passback = AntiPassback(mode, 600.0, clock)  # type: ignore[arg-type]  # parametrised literal
    auth = Authoriser(section, store_lookup(policy.store), passback=passback, bus=bus)
    now = berlin(2026, 12, 9, 12, 0)
    async with bus.subscribe(SecurityEvent, name="t", maxsize=8) as alarms:
        assert (await auth.authorise(granted("A1", now))).decision is Decision.GRANTED
        second = await auth.authorise(granted("A1", now))  # entry again, no exit
        if mode == "hard":
            assert (second.decision, second.reason) == (Decision.DENIED, "anti_passback")
            assert alarms.get_nowait() is None
        else:
            assert second.decision is Decision.GRANTED
            alarm = alarms.get_nowait()
            assert alarm is not None and alarm.kind is SecurityKind.ANTI_PASSBACK
            assert alarm.subject_id == "A1"
        passback.record("A1", "exit")  # the exit reader (a peer) saw them leave
        assert (await auth.authorise(granted("A1", now))).decision is Decision.GRANTED
        await clock.advance(600.0)  # the timeout resets the state
        assert (await auth.authorise(granted("A1", now))).decision is Decision.GRANTED
