"""Licence documents and states against a real encrypted store and the injected clock.

Every refusal has its own state and raises a security event; the validity window is driven
by the ManualClock; clock rollback beyond the tolerance is detected, small corrections are not.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from facegate.policy.licence import LicenceManager, LicenceState, issue_test_licence, make_body, sign
from facegate.policy.licence.clockguard import KV_KEY
from facegate.policy.licence.errors import LicenceNotInstalled, LicenceRequired
from facegate.runtime.bus import EventBus
from facegate.runtime.clock import ManualClock
from facegate.runtime.events import SecurityEvent, SecurityKind
from facegate.storage import Store

from .conftest import section, write_identifiers

DAY = 86_400.0


class Recorder:
    def __init__(self, bus: EventBus) -> None:
        self.security: list[SecurityEvent] = []
        bus.publish = self._publish  # type: ignore[method-assign]  # record what the manager raises

    def _publish(self, event: object) -> None:
        if isinstance(event, SecurityEvent):
            self.security.append(event)


@pytest_asyncio.fixture
async def manager(
    tmp_path: Path, store: Store, clock: ManualClock, vendor: Ed25519PrivateKey
) -> AsyncIterator[tuple[LicenceManager, Recorder]]:
    write_identifiers(tmp_path / "root")
    bus = EventBus()
    rec = Recorder(bus)
    async with LicenceManager(section(tmp_path, vendor), store=store, bus=bus, clock=clock) as m:
        yield m, rec


def tamper_body(blob: bytes) -> bytes:
    doc = json.loads(blob)
    doc["body"]["features"]["max_subjects"] = 1_000_000
    return json.dumps(doc).encode()


def tamper_signature(blob: bytes) -> bytes:
    doc = json.loads(blob)
    sig = bytearray(base64.b64decode(doc["signature"]))
    sig[0] ^= 0x01
    doc["signature"] = base64.b64encode(bytes(sig)).decode()
    return json.dumps(doc).encode()


@pytest.mark.asyncio
async def test_missing_then_valid_install(
    manager: tuple[LicenceManager, Recorder], vendor: Ed25519PrivateKey, clock: ManualClock
) -> None:
    m, rec = manager
    assert m.status.state is LicenceState.MISSING and not m.recognition_allowed()
    with pytest.raises(LicenceRequired) as info:
        m.check_enrolment(0)
    assert info.value.code == "licence_required"
    blob = issue_test_licence(vendor, m.fingerprint.value, now=clock.wall(), features={"max_subjects": 2})
    reply = await m.install(blob)
    assert reply["state"] == "valid" and m.recognition_allowed()
    assert m.path.read_bytes() == blob
    m.check_enrolment(1)
    with pytest.raises(LicenceRequired) as info:
        m.check_enrolment(2)
    assert info.value.code == "licence_max_subjects"
    assert rec.security == []


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("case", "state"),
    [
        ("payload", LicenceState.INVALID_SIGNATURE),
        ("signature", LicenceState.INVALID_SIGNATURE),
        ("untrusted", LicenceState.UNTRUSTED_KEY),
        ("other_device", LicenceState.WRONG_DEVICE),
    ],
)
async def test_each_tamper_is_refused_with_its_state_and_a_security_event(
    manager: tuple[LicenceManager, Recorder],
    vendor: Ed25519PrivateKey,
    clock: ManualClock,
    case: str,
    state: LicenceState,
) -> None:
    m, rec = manager
    good = issue_test_licence(vendor, m.fingerprint.value, now=clock.wall())
    await m.install(good)
    bad = {
        "payload": lambda: tamper_body(good),
        "signature": lambda: tamper_signature(good),
        "untrusted": lambda: issue_test_licence(
            Ed25519PrivateKey.generate(), m.fingerprint.value, now=clock.wall()
        ),
        "other_device": lambda: issue_test_licence(vendor, "ab" * 32, now=clock.wall()),
    }[case]()
    # Over the install path: refused with the state as the code, the old licence stays in force.
    with pytest.raises(LicenceNotInstalled) as info:
        await m.install(bad)
    assert info.value.code == state.value
    assert m.path.read_bytes() == good and m.status.state is LicenceState.VALID
    assert [e.kind for e in rec.security] == [SecurityKind.LICENCE_TAMPER]
    # Found on disk (copied in by hand): the device reports the state and raises the event again.
    m.path.write_bytes(bad)
    status = await m.check()
    assert status.state is state and not m.recognition_allowed()
    assert len(rec.security) == 2 and rec.security[-1].kind is SecurityKind.LICENCE_TAMPER
    assert state.value in rec.security[-1].detail


@pytest.mark.asyncio
async def test_not_yet_valid_valid_grace_expired_by_the_clock(
    manager: tuple[LicenceManager, Recorder], vendor: Ed25519PrivateKey, clock: ManualClock
) -> None:
    m, _ = manager
    start = clock.wall() + DAY
    body = make_body(
        binding=("fingerprint", m.fingerprint.value),
        now=clock.wall(),
        not_before=start,
        days=10,
        grace_days=3,
    )
    await m.install(sign(body, vendor))
    assert m.status.state is LicenceState.NOT_YET_VALID and not m.recognition_allowed()
    seen = []
    for offset in (DAY + 1, 11 * DAY - 1, 11 * DAY + 1, 14 * DAY - 1, 14 * DAY + 1):
        clock.set_wall(start - DAY + offset)
        seen.append((await m.check()).state)
    assert seen == [
        LicenceState.VALID,
        LicenceState.VALID,
        LicenceState.GRACE,
        LicenceState.GRACE,
        LicenceState.EXPIRED,
    ]
    assert not m.recognition_allowed()


@pytest.mark.asyncio
async def test_clock_rollback_detected_beyond_tolerance_small_corrections_not(
    manager: tuple[LicenceManager, Recorder], vendor: Ed25519PrivateKey, clock: ManualClock, store: Store
) -> None:
    m, rec = manager
    await m.install(issue_test_licence(vendor, m.fingerprint.value, now=clock.wall()))
    now = clock.wall()
    clock.set_wall(now - 300)  # an NTP correction of 5 min: tolerated (default tolerance 10 min)
    assert (await m.check()).state is LicenceState.VALID
    clock.set_wall(now - 3600)
    assert (await m.check()).state is LicenceState.CLOCK_ROLLBACK
    assert not m.recognition_allowed()
    assert [e.kind for e in rec.security] == [SecurityKind.CLOCK_ROLLBACK]
    clock.set_wall(now + 60)
    assert (await m.check()).state is LicenceState.VALID
    # The high-water mark is persisted sealed: a fresh manager on the same store still sees it.
    sealed = await store.kv.get(KV_KEY)
    assert sealed is not None and str(int(now)) not in sealed
    clock.set_wall(now - 3600)
    async with LicenceManager(m.cfg, store=store, bus=EventBus(), clock=clock) as again:
        assert again.status.state is LicenceState.CLOCK_ROLLBACK


@pytest.mark.asyncio
async def test_kill_mid_install_leaves_the_previous_licence(
    manager: tuple[LicenceManager, Recorder], vendor: Ed25519PrivateKey, clock: ManualClock
) -> None:
    m, _ = manager
    old = issue_test_licence(vendor, m.fingerprint.value, now=clock.wall())
    await m.install(old)
    # A kill -9 between writing the temporary file and the rename leaves only the temp file.
    (m.path.parent / f".{m.path.name}.4242.tmp").write_bytes(b'{"body": {"truncat')
    assert (await m.check()).licence_id == json.loads(old)["body"]["licence_id"]


@pytest.mark.asyncio
async def test_max_cameras_is_checked_at_start(
    tmp_path: Path, store: Store, clock: ManualClock, vendor: Ed25519PrivateKey
) -> None:
    write_identifiers(tmp_path / "root")
    cfg = section(tmp_path, vendor)
    async with LicenceManager(cfg, store=store, bus=EventBus(), clock=clock) as probe:
        blob = issue_test_licence(
            vendor, probe.fingerprint.value, now=clock.wall(), features={"max_cameras": 1}
        )
        await probe.install(blob)
        assert probe.recognition_allowed()  # one camera
    async with LicenceManager(cfg, store=store, bus=EventBus(), clock=clock, cameras=2) as two:
        assert two.status.state is LicenceState.VALID and not two.recognition_allowed()


@pytest.mark.asyncio
async def test_an_edited_clock_mark_is_a_security_event(
    tmp_path: Path, store: Store, clock: ManualClock, vendor: Ed25519PrivateKey
) -> None:
    write_identifiers(tmp_path / "root")
    cfg = section(tmp_path, vendor)
    async with LicenceManager(cfg, store=store, bus=EventBus(), clock=clock):
        pass
    sealed = await store.kv.get(KV_KEY)
    assert sealed is not None
    await store.kv.set(KV_KEY, ("00" if sealed[:2] != "00" else "11") + sealed[2:])
    bus = EventBus()
    rec = Recorder(bus)
    async with LicenceManager(cfg, store=store, bus=bus, clock=clock):
        pass
    assert [e.kind for e in rec.security] == [SecurityKind.CLOCK_ROLLBACK]


def test_kill_9_during_installs_always_leaves_a_whole_licence(
    tmp_path: Path, vendor: Ed25519PrivateKey
) -> None:
    """A real process replacing the licence in a loop is SIGKILLed; the file is always one whole licence."""
    import signal  # noqa: PLC0415
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415
    import time  # noqa: PLC0415

    a = issue_test_licence(vendor, "a" * 64, now=0.0, features={"pad": "x" * 20_000})
    b = issue_test_licence(vendor, "b" * 64, now=0.0, features={"pad": "y" * 20_000})
    (tmp_path / "a").write_bytes(a)
    (tmp_path / "b").write_bytes(b)
    target = tmp_path / "device.licence"
    target.write_bytes(a)
    script = (
        "import sys; from pathlib import Path; from facegate.policy.licence.files import write_atomic\n"
        "d = Path(sys.argv[1]); blobs = [(d / 'a').read_bytes(), (d / 'b').read_bytes()]\n"
        "print('go', flush=True)\n"
        "i = 0\n"
        "while True:\n"
        "    write_atomic(d / 'device.licence', blobs[i % 2]); i += 1\n"
    )
    for round_ in range(5):
        proc = subprocess.Popen([sys.executable, "-c", script, str(tmp_path)], stdout=subprocess.PIPE)
        assert proc.stdout is not None and proc.stdout.readline() == b"go\n"
        time.sleep(0.05 + 0.03 * round_)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        assert target.read_bytes() in (a, b)
