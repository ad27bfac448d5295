"""End to end through a real Device: enrol over signed MQTT, be recognised, withdraw.

A real encrypted store (env KEK, tmp db), the real ONNX models (converted once
per session into a shared cache), the simulated camera and GPIO, and a real
Mosquitto. Everything is observed as an outside subscriber sees it.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
import pytest_asyncio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from facegate.drivers.camera import SimulatedCamera
from facegate.handlers.commands import first_error
from facegate.policy import ConsentKind, ConsentMethod, Policy, device_public_key, verify_export
from facegate.policy.actions import open_bundle
from facegate.runtime.app.device import Device
from facegate.runtime.config import load_config

from ..fixtures.brokers import MosquittoBroker
from .device_util import FACES, KEK_ENV, Operator, device_config, fresh_kek
from .util import Observer, observe

pytestmark = pytest.mark.mosquitto
ALICE = Ed25519PrivateKey.generate()
SHOW = 30  # 2 s at 15 fps: enough frames for k agreeing decisions
EVIDENCE = "sha256:" + hashlib.sha256(b"signed consent form").hexdigest()


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Converted models, shared by every device test of the session (converted once)."""
    return tmp_path_factory.mktemp("model-cache")


@pytest_asyncio.fixture
async def device(
    tmp_path: Path, mosquitto: MosquittoBroker, model_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Device]:
    monkeypatch.setenv(KEK_ENV, fresh_kek())
    loaded = load_config(
        device_config(tmp_path, mosquitto, operators={"alice": ALICE}, cache_dir=model_cache)
    )
    async with Device(loaded, handle_signals=False) as dev:
        assert dev.parts.mqtt is not None and dev.parts.mqtt.commands is not None
        assert dev.parts.recognition is not None
        async with asyncio.timeout(120):
            await dev.parts.mqtt.commands.wait_ready()
            await dev.parts.recognition.wait_ready()
        await asyncio.sleep(0.3)  # the SUBSCRIBE reaches the broker
        yield dev
        dev.request_shutdown("test over")


@pytest_asyncio.fixture
async def operator(mosquitto: MosquittoBroker) -> AsyncIterator[Operator]:
    async with aiomqtt.Client(mosquitto.host, mosquitto.port, identifier="op-e2e") as client:
        await client.subscribe("ops/e2e", qos=1)
        yield Operator(client, ALICE, "alice")


async def grant_consent(policy: Policy, subject_id: str) -> str:
    await policy.consents.record_age(subject_id, birth_date=None, age_band=_adult(), actor="kiosk")
    record = await policy.consents.grant(
        subject_id=subject_id,
        kind=ConsentKind.BIOMETRIC,
        method=ConsentMethod.KIOSK,
        evidence_digest=EVIDENCE,
        actor="kiosk",
        activate=True,
    )
    return record.consent_id


def _adult() -> Any:
    from facegate.policy import AgeBand  # noqa: PLC0415  # keeps the import list short

    return AgeBand("18_plus")


def access_for(obs: Observer, start: int) -> Any:
    return obs.wait_for(lambda s: s.topic.endswith("event/access"), within=60, start=start)


@pytest.mark.asyncio
async def test_enrol_over_mqtt_recognise_then_withdraw(
    device: Device, operator: Operator, mosquitto: MosquittoBroker
) -> None:
    policy = device.parts.policy
    camera = device.parts.camera
    assert policy is not None and isinstance(camera, SimulatedCamera)
    image = base64.b64encode((FACES / "obama.jpg").read_bytes()).decode()

    async with observe(mosquitto, "facegate/v1/gate-1/#", client_id="outside") as obs:
        # 1. No consent yet: refused before any face is processed.
        reply = await operator.call(
            "enroll", {"image_b64": image, "consent_ref": "nope", "subject_id": "emp-7"}
        )
        assert reply["ok"] is False and reply["code"] == "unknown_consent", reply

        consent = await grant_consent(policy, "emp-7")
        other = await grant_consent(policy, "emp-8")
        reply = await operator.call(
            "enroll", {"image_b64": image, "consent_ref": other, "subject_id": "emp-7"}
        )
        assert reply["code"] == "consent_mismatch", reply
        bad = base64.b64encode(b"not an image at all").decode()
        reply = await operator.call("enroll", {"image_b64": bad, "consent_ref": consent})
        assert reply["ok"] is False and reply["code"].startswith("image_rejected:"), reply

        # 2. Enrol with consent over a signed command (subject from the consent).
        reply = await operator.call("enroll", {"image_b64": image, "consent_ref": consent})
        assert reply["ok"] is True, reply
        assert reply["result"]["subject_id"] == "emp-7" and reply["result"]["templates_added"] == 1

        # 3. The same person, other photos, in front of the camera: granted, door unlocked.
        mark = len(obs.messages)
        await camera.show(FACES / "obama2.jpg", frames=SHOW, jitter=True)
        granted = await obs.wait_for(
            lambda s: s.topic.endswith("event/access") and s.json()["decision"] == "granted",
            within=60,
            start=mark,
        )
        assert granted.json()["subject_id"] == "emp-7"
        door = await obs.wait_for(
            lambda s: s.topic.endswith("event/door") and s.json()["kind"] == "unlocked", within=30, start=mark
        )
        assert door.json()["cause"] == f"decision:{granted.json()['event_id']}"

        # 4. Export: only a summary without a key; the signed bundle only encrypted to the requester.
        reply = await operator.call("export", {"subject_id": "emp-7"})
        assert reply["ok"] and reply["result"]["bundle"] is None and reply["result"]["templates"] == 1
        recipient = X25519PrivateKey.generate()
        rkey = base64.b64encode(recipient.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()
        reply = await operator.call("export", {"subject_id": "emp-7", "recipient_key_b64": rkey})
        bundle = open_bundle(reply["result"]["bundle"], "emp-7", recipient)
        body = verify_export(bundle, await device_public_key(policy.store))
        assert body["subject"]["subject_id"] == "emp-7" and body["enrolment"]["template_count"] == 1

        # 5. Rectify attributes (allow-list; no names over MQTT).
        reply = await operator.call("rectify", {"subject_id": "emp-7", "attributes": {"department": "ops"}})
        assert reply["ok"] and reply["result"] == {"subject_id": "emp-7", "set": 1, "removed": 0}, reply
        reply = await operator.call("rectify", {"subject_id": "emp-7", "attributes": {"display_name": "X"}})
        assert reply["code"] == "bad_args", reply

        # 6. Withdraw: erasure receipt on event/privacy, then the face is unknown.
        mark = len(obs.messages)
        reply = await operator.call("withdraw", {"subject_id": "emp-7"})
        assert reply["ok"] is True and reply["result"]["templates_erased"] == 1, reply
        receipt = await obs.wait_for(
            lambda s: s.topic.endswith("event/privacy") and s.json()["kind"] == "erasure",
            within=30,
            start=mark,
        )
        assert receipt.json()["subject_id"] == "emp-7"
        assert receipt.json()["receipt_id"] == reply["result"]["receipt_id"]
        reply = await operator.call("erase", {"subject_id": "emp-404"})
        assert reply["code"] == "unknown_subject", reply
        reply = await operator.call("keys/rotate", {})
        assert reply["code"] == "not_supported_while_running" and "facegate keys rotate" in reply["message"]
        reply = await operator.call("licence/install", {"licence_b64": "AAAA"})
        assert reply["code"] == "not_available" and "licens" in reply["message"], reply

        await asyncio.sleep(2.5)  # the decision cooldown of the track ends
        mark = len(obs.messages)
        await camera.show(FACES / "obama2.jpg", frames=SHOW, jitter=True)  # obama3 is too small at 640x480
        after = await obs.wait_for(
            lambda s: s.topic.endswith("event/access") and s.json()["decision"] in {"granted", "unknown"},
            within=60,
            start=mark,
        )
        assert after.json()["decision"] == "unknown", after.json()
        assert not any(
            m.topic.endswith("event/access") and m.json()["decision"] == "granted"
            for m in obs.messages[mark:]
        )

    # Privacy: no name, embedding or image in any payload the device published
    # (cmd/* are the operator's own messages; the enrolment photo travels there).
    device_out = [m for m in obs.messages if "/cmd/" not in m.topic]
    assert {"event/access", "event/door", "event/privacy", "status"} <= {
        m.topic.split("gate-1/", 1)[1] for m in device_out
    }
    for m in device_out:
        body = m.json()
        kind = m.topic.split("gate-1/", 1)[1].replace("/", "_")
        if kind.startswith("event_"):
            assert first_error(kind, body) is None, (kind, first_error(kind, body))
        _assert_private(body, m.payload)


def _assert_private(body: dict[str, Any], raw: bytes) -> None:
    text = raw.decode()
    assert "obama" not in text.lower() and "/9j/" not in text  # no file name, no JPEG base64
    for key in _keys(body):
        assert key not in {"name", "display_name", "embedding", "embeddings", "image", "image_b64"}, key
    assert len(raw) < 8000, "an event payload this large could only carry an image or a vector"


def _keys(obj: object) -> list[str]:
    out: list[str] = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            if not (k == "name" and "passed" in obj):  # a quality/liveness check's name
                out.append(k)
            out.extend(_keys(v))
    elif isinstance(obj, list):
        for v in obj:
            out.extend(_keys(v))
    return out


def test_helpers_are_consistent() -> None:
    # The stage lists carry a "name" (the check's name); _keys skips exactly those.
    assert _keys({"quality": [{"name": "sharpness", "passed": True}]}) == ["quality", "passed"]
    assert "name" in _keys({"name": "Barack"})
    assert json.dumps({}) == "{}"
