"""Decision snapshots reach the store only when the policy turns them on (whole device)."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import date
from pathlib import Path

import pytest
from facegate.drivers.camera import SimulatedCamera
from facegate.policy import ConsentKind, ConsentMethod, enrol_images
from facegate.policy.snapshots import get_snapshot
from facegate.runtime.app.device import Device
from facegate.runtime.config import load_config
from facegate.runtime.events import AccessDecision, Decision

from ..fixtures.brokers import MosquittoBroker
from ..mqtt.device_util import FACES, KEK_ENV, device_config, fresh_kek

EVIDENCE = "sha256:" + "cd" * 32


@pytest.fixture(scope="module")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("model-cache")


async def _grant_one(
    tmp_path: Path, mosquitto: MosquittoBroker, cache: Path, snapshots: bool
) -> tuple[Device, str]:
    extra = f"\n[privacy]\ndecision_snapshots = {'true' if snapshots else 'false'}\n"
    cfg = device_config(tmp_path, mosquitto, operators={}, cache_dir=cache, extra=extra)
    device = Device(load_config(cfg), handle_signals=False)
    async with device:
        await device.started.wait()
        parts = device.parts
        assert parts.recognition is not None and parts.engine is not None and parts.policy is not None
        assert isinstance(parts.camera, SimulatedCamera)
        await parts.recognition.wait_ready()
        engine, policy, camera = parts.engine, parts.policy, parts.camera
        await policy.record_age("emp-1", actor="op", birth_date=date(1961, 8, 4))
        await policy.consents.grant(
            subject_id="emp-1", kind=ConsentKind.BIOMETRIC, method=ConsentMethod.KIOSK,
            evidence_digest=EVIDENCE, actor="op", activate=True,
        )
        photo = (FACES / "obama.jpg").read_bytes()
        await enrol_images(policy, "emp-1", [photo], engine.embed_image, actor="op")
        service = parts.recognition
        async with device.bus.subscribe(AccessDecision, name="test", maxsize=64) as sub:
            await camera.show(FACES / "obama2.jpg", frames=24, jitter=True)
            async with asyncio.timeout(30):
                while (d := await sub.get()).decision is not Decision.GRANTED:
                    pass
        # The service stores the snapshot (if any) before it takes its next frame: once a
        # later frame is analysed, the decision's snapshot is written or never will be.
        decided = service.frames_analysed
        async with asyncio.timeout(60):
            while service.frames_analysed <= decided:
                await camera.show(FACES / "obama2.jpg", frames=1, jitter=True)
                await asyncio.sleep(0.05)
        if snapshots:
            (sid,) = [r[0] for r in await policy.store.db.fetchall(
                "SELECT snapshot_id FROM policy_snapshots WHERE decision_id = ?", (d.event_id,)
            )]
            jpeg = await get_snapshot(policy, sid)
            assert jpeg[:3] == b"\xff\xd8\xff"  # the face crop, decrypted
        device.request_shutdown("test")
    return device, d.event_id


@pytest.mark.asyncio
@pytest.mark.timeout(120)
async def test_snapshots_on_store_the_sealed_face_crop(
    tmp_path: Path, mosquitto: MosquittoBroker, model_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEK_ENV, fresh_kek())
    _, event_id = await _grant_one(tmp_path, mosquitto, model_cache, snapshots=True)
    with sqlite3.connect(tmp_path / "device.db") as conn:
        rows = conn.execute("SELECT decision_id, ciphertext FROM policy_snapshots").fetchall()
    assert [r[0] for r in rows] == [event_id]
    assert b"\xff\xd8\xff" not in bytes(rows[0][1])  # sealed, never a plain JPEG at rest


@pytest.mark.asyncio
@pytest.mark.timeout(120)
async def test_snapshots_off_persist_no_image(
    tmp_path: Path, mosquitto: MosquittoBroker, model_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEK_ENV, fresh_kek())
    await _grant_one(tmp_path, mosquitto, model_cache, snapshots=False)
    with sqlite3.connect(tmp_path / "device.db") as conn:
        assert conn.execute("SELECT COUNT(*) FROM policy_snapshots").fetchone() == (0,)
    raw = await asyncio.to_thread(lambda: b"".join(p.read_bytes() for p in tmp_path.glob("device*.db*")))
    assert b"\xff\xd8\xff" not in raw  # no JPEG anywhere in the database files
