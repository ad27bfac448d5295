"""Remote open (signed ``open``) through the face's authorisation and audit path.

Real SQLite store (encrypted attributes, audit hash chain), the real door
controller on the simulated GPIO chip, the real verb table.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from facegate.drivers.gpio import SimulatedGpio, build_driver
from facegate.handlers.access import Authoriser, store_lookup
from facegate.handlers.access.remote import REMOTE_OPEN, RemoteOpen
from facegate.handlers.commands.errors import VerbFailed
from facegate.handlers.commands.verbs import Invocation, Tunables, VerbParts, VerbTable, device_verbs
from facegate.handlers.door import DoorController
from facegate.handlers.reporting.codec import EventCodec
from facegate.policy import Policy
from facegate.runtime.bus import EventBus
from facegate.runtime.clock import ManualClock
from facegate.runtime.config.gpio import GpioSection
from facegate.runtime.events import AccessDecision, Decision
from facegate.storage.audit import verify_chain

from .test_access_rights import SECTION, berlin, enrol


class Rig:
    def __init__(self, table: VerbTable, gpio: SimulatedGpio, door: DoorController, bus: EventBus) -> None:
        self.table, self.gpio, self.door, self.bus = table, gpio, door, bus
        self.n = 0

    @property
    def actuations(self) -> int:
        return self.gpio.actuations(GpioSection().relay_line, to=True)

    async def open(self, **args: str) -> dict[str, object]:
        self.n += 1
        inv = Invocation(verb="open", args=args, operator="alice", nonce=f"n{self.n}")
        return await self.table.run(inv)


@pytest_asyncio.fixture
async def rig(policy: Policy, clock: ManualClock) -> AsyncIterator[Rig]:
    bus = EventBus()
    section = GpioSection()
    gpio = build_driver(section, clock)
    assert isinstance(gpio, SimulatedGpio)
    async with gpio:
        door = DoorController(section, gpio, bus, clock)
        remote = RemoteOpen(
            door,
            bus,
            clock,
            authoriser=Authoriser(SECTION, store_lookup(policy.store), bus=bus),
            store=policy.store,
        )
        table = device_verbs(
            parts=VerbParts(door=door, remote_open=remote),
            clock=clock,
            device_id="gate-1",
            tunables=Tunables(),
        )
        task = asyncio.create_task(door.run(), name="door")
        for _ in range(20):
            await asyncio.sleep(0)
        try:
            yield Rig(table, gpio, door, bus)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


def audit_rows(db_path: Path) -> list[tuple[str, str | None, dict[str, str]]]:
    with sqlite3.connect(db_path) as con:
        rows = con.execute(
            "SELECT actor, subject_id, detail FROM audit WHERE action = 'door_command' ORDER BY seq"
        ).fetchall()
    return [(a, s, json.loads(d)) for a, s, d in rows]


@pytest.mark.asyncio
async def test_remote_open_is_authorised_audited_and_published_like_a_face(
    rig: Rig, policy: Policy, clock: ManualClock, db_path: Path
) -> None:
    await enrol(policy, "S1", 2, access_group="staff")
    await enrol(policy, "X1", 3, valid_until="2026-12-01", access_group="staff")
    decisions: list[AccessDecision] = []
    async with rig.bus.subscribe(AccessDecision, name="t", maxsize=64) as sub:

        async def expect(decision: Decision, reason: str) -> AccessDecision:
            ev = await asyncio.wait_for(sub.get(), 5)
            assert (ev.decision, ev.reason) == (decision, reason), ev
            decisions.append(ev)
            return ev

        # A subject inside its group's window: granted, one pulse (the door does not pulse
        # again on the published remote_open decision).
        clock.set_wall(berlin(2026, 12, 9, 12, 0))
        reply = await rig.open(subject="S1")
        assert reply["opened"] is True and reply["reason"] == REMOTE_OPEN
        ev = await expect(Decision.GRANTED, REMOTE_OPEN)
        assert ev.subject_id == "S1" and reply["decision"] == ev.event_id
        for _ in range(20):
            await asyncio.sleep(0)
        assert rig.actuations == 1

        # Outside the window, an expired subject, a group on a holiday, an unknown group.
        clock.set_wall(berlin(2026, 12, 9, 20, 0))
        with pytest.raises(VerbFailed) as refused:
            await rig.open(subject="S1")
        assert refused.value.code == "outside_schedule"
        assert (await expect(Decision.DENIED, "outside_schedule")).schedule == "office"
        clock.set_wall(berlin(2026, 12, 9, 12, 0))
        with pytest.raises(VerbFailed) as refused:
            await rig.open(subject="X1")
        assert refused.value.code == "expired"
        await expect(Decision.DENIED, "expired")
        clock.set_wall(berlin(2026, 12, 25, 12, 0))
        with pytest.raises(VerbFailed) as refused:
            await rig.open(group="staff")
        assert refused.value.code == "outside_schedule"
        await expect(Decision.DENIED, "outside_schedule")
        with pytest.raises(VerbFailed) as refused:
            await rig.open(group="visitors")
        assert refused.value.code == "unknown_group"
        await expect(Decision.DENIED, "unknown_group")
        assert rig.actuations == 1

        # Without a subject or group: the operator's own remote open, granted at any hour.
        await clock.advance(GpioSection().unlock_s + 1)  # the first pulse ends
        for _ in range(20):
            await asyncio.sleep(0)
        assert rig.gpio.actuations(GpioSection().relay_line, to=False) >= 1
        reply = await rig.open()
        assert reply["opened"] is True
        assert (await expect(Decision.GRANTED, REMOTE_OPEN)).subject_id is None
        assert rig.actuations == 2

        # Lockdown refuses it, whatever it names; still audited and published.
        rig.door.lockdown("command:test")
        with pytest.raises(VerbFailed) as refused:
            await rig.open()
        assert refused.value.code == "locked_down"
        await expect(Decision.DENIED, "lockdown")
        assert rig.actuations == 2

    rows = audit_rows(db_path)
    assert [(s, d["decision"], d["reason"]) for _, s, d in rows] == [
        ("S1", "granted", "remote_open"),
        ("S1", "denied", "outside_schedule"),
        ("X1", "denied", "expired"),
        (None, "denied", "outside_schedule"),
        (None, "denied", "unknown_group"),
        (None, "granted", "remote_open"),
        (None, "denied", "lockdown"),
    ]
    assert {a for a, _, _ in rows} == {"alice"}  # accountability: the verified operator
    assert [d["event_id"] for _, _, d in rows] == [e.event_id for e in decisions]
    assert rows[1][2]["schedule"] == "office" and rows[3][2]["group"] == "staff"
    assert verify_chain(db_path).ok
    # Privacy: the operator's name is in the audit log only, never in event/access.
    codec = EventCodec("gate-1")
    for ev in decisions:
        assert b"alice" not in codec.encode(ev).payload


@pytest.mark.asyncio
async def test_remote_open_fails_closed_when_the_audit_cannot_be_written(
    rig: Rig, policy: Policy, clock: ManualClock, db_path: Path
) -> None:
    # Another process holds the database's write lock: the open cannot be recorded in time.
    blocker = sqlite3.connect(db_path, isolation_level=None)
    try:
        blocker.execute("BEGIN EXCLUSIVE")
        with pytest.raises(VerbFailed) as refused:
            await rig.open()
        assert refused.value.code == "audit_unavailable"
        assert rig.actuations == 0
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert audit_rows(db_path) == []  # nothing was recorded, nothing was opened


@pytest.mark.asyncio
async def test_a_door_that_cannot_open_is_recorded_in_the_chain(
    policy: Policy, clock: ManualClock, db_path: Path
) -> None:
    bus = EventBus()
    section = GpioSection(relay="none")  # gate-controller mode: no relay to open
    gpio = build_driver(section, clock)
    async with gpio:
        door = DoorController(section, gpio, bus, clock)
        remote = RemoteOpen(door, bus, clock, authoriser=None, store=policy.store)
        table = device_verbs(
            parts=VerbParts(door=door, remote_open=remote),
            clock=clock,
            device_id="gate-1",
            tunables=Tunables(),
        )
        task = asyncio.create_task(door.run(), name="door")
        for _ in range(20):
            await asyncio.sleep(0)
        try:
            with pytest.raises(VerbFailed) as failed:
                await table.run(Invocation(verb="open", args={}, operator="alice", nonce="n1"))
            assert "door:" in str(failed.value)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    assert [d["reason"] for _, _, d in audit_rows(db_path)] == ["remote_open", "door_failed"]
    assert verify_chain(db_path).ok
