"""End to end through a real Device: enrol over signed MQTT, be recognised, withdraw.

Runs on the public facegate.testing plugin (``sim_device``, ``mqtt_probe``): a
real encrypted store, the real ONNX models, the simulated camera and GPIO, and
a real Mosquitto (or the embedded broker when Mosquitto is absent). Commands
are signed by the plugin's test operator key; everything is observed as an
outside subscriber sees it.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from facegate.handlers.commands import first_error
from facegate.policy import AgeBand, ConsentKind, ConsentMethod, Policy, device_public_key, verify_export
from facegate.policy.actions import open_bundle
from facegate.testing import MqttProbe, SimDevice

from .device_util import FACES

SHOW = 30  # 2 s at 15 fps: enough frames for k agreeing decisions
EVIDENCE = "sha256:" + hashlib.sha256(b"signed consent form").hexdigest()


async def grant_consent(policy: Policy, subject_id: str) -> str:
    await policy.consents.record_age(subject_id, birth_date=None, age_band=AgeBand.ADULT, actor="kiosk")
    record = await policy.consents.grant(
        subject_id=subject_id,
        kind=ConsentKind.BIOMETRIC,
        method=ConsentMethod.KIOSK,
        evidence_digest=EVIDENCE,
        actor="kiosk",
        activate=True,
    )
    return record.consent_id


@pytest.mark.asyncio
async def test_enrol_over_mqtt_recognise_then_withdraw(sim_device: SimDevice, mqtt_probe: MqttProbe) -> None:
    dev, probe = sim_device, mqtt_probe
    policy = dev.policy
    image = base64.b64encode((FACES / "obama.jpg").read_bytes()).decode()

    # 1. No consent yet: refused before any face is processed.
    reply = await dev.command("enroll", image_b64=image, consent_ref="nope", subject_id="emp-7")
    assert reply["ok"] is False and reply["code"] == "unknown_consent", reply

    consent = await grant_consent(policy, "emp-7")
    other = await grant_consent(policy, "emp-8")
    reply = await dev.command("enroll", image_b64=image, consent_ref=other, subject_id="emp-7")
    assert reply["code"] == "consent_mismatch", reply
    bad = base64.b64encode(b"not an image at all").decode()
    reply = await dev.command("enroll", image_b64=bad, consent_ref=consent)
    assert reply["ok"] is False and reply["code"].startswith("image_rejected:"), reply

    # 2. Enrol with consent over a signed command (subject from the consent).
    reply = await dev.command("enroll", image_b64=image, consent_ref=consent)
    assert reply["ok"] is True, reply
    assert reply["result"]["subject_id"] == "emp-7" and reply["result"]["templates_added"] == 1

    # 3. The same person, other photos, in front of the camera: granted, door unlocked.
    await dev.show_face(FACES / "obama2.jpg", frames=SHOW)
    granted = await probe.expect("event/access", decision="granted", timeout=60)
    assert granted["subject_id"] == "emp-7"
    door = await probe.expect("event/door", kind="unlocked", timeout=30)
    assert door["cause"] == f"decision:{granted['event_id']}"
    assert dev.relay.pulses

    # 4. Export: only a summary without a key; the signed bundle only encrypted to the requester.
    reply = await dev.command("export", subject_id="emp-7")
    assert reply["ok"] and reply["result"]["bundle"] is None and reply["result"]["templates"] == 1
    recipient = X25519PrivateKey.generate()
    rkey = base64.b64encode(recipient.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()
    reply = await dev.command("export", subject_id="emp-7", recipient_key_b64=rkey)
    bundle = open_bundle(reply["result"]["bundle"], "emp-7", recipient)
    body = verify_export(bundle, await device_public_key(policy.store))
    assert body["subject"]["subject_id"] == "emp-7" and body["enrolment"]["template_count"] == 1

    # 5. Rectify attributes (allow-list; no names over MQTT).
    reply = await dev.command("rectify", subject_id="emp-7", attributes={"department": "ops"})
    assert reply["ok"] and reply["result"] == {"subject_id": "emp-7", "set": 1, "removed": 0}, reply
    reply = await dev.command("rectify", subject_id="emp-7", attributes={"display_name": "X"})
    assert reply["code"] == "bad_args", reply

    # 6. Withdraw: erasure receipt on event/privacy, then the face is unknown.
    reply = await dev.command("withdraw", subject_id="emp-7")
    assert reply["ok"] is True and reply["result"]["templates_erased"] == 1, reply
    receipt = await probe.expect("event/privacy", kind="erasure", timeout=30)
    assert receipt["subject_id"] == "emp-7"
    assert receipt["receipt_id"] == reply["result"]["receipt_id"]
    reply = await dev.command("erase", subject_id="emp-404")
    assert reply["code"] == "unknown_subject", reply
    # The simulated device keeps its KEK in a 0600 file: it rotates live (an env KEK cannot;
    # tests/mqtt/test_cli_and_integrations.py and tests/policy/test_live_rotation.py cover that).
    reply = await dev.command("keys/rotate")
    assert reply["ok"] is True, reply
    # Simulated devices carry a valid test licence: bytes that are no licence are refused with
    # their state (docs/licence.md), and the installed licence stays in force.
    reply = await dev.command("licence/install", licence_b64="AAAA")
    assert reply["ok"] is False and reply["code"] == "invalid_signature", reply
    assert reply["message"].startswith("licence not installed (invalid_signature)"), reply

    await asyncio.sleep(2.5)  # the decision cooldown of the track ends
    probe.mark()
    await dev.show_face(FACES / "obama2.jpg", frames=SHOW)  # obama3 is too small at 640x480
    after = await probe.expect("event/access", decision="unknown", timeout=60)
    assert after["subject_id"] is None
    await probe.never("event/access", decision="granted", within=0.5)

    # Privacy: no name, embedding or image in any payload the device published
    # (cmd/* are the operator's own messages; the enrolment photo travels there).
    device_out = [m for m in probe.messages if m.device_id == dev.id and not m.suffix.startswith("cmd/")]
    assert {"event/access", "event/door", "event/privacy", "status"} <= {m.suffix for m in device_out}
    for m in device_out:
        body = m.json()
        kind = m.suffix.replace("/", "_")
        if kind.startswith("event_"):
            assert first_error(kind, body) is None, (kind, first_error(kind, body))
        _assert_private(body, m.payload)
    assert probe.schema_errors == []


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
