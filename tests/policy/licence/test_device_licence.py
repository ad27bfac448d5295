"""A whole device with the licence on, against a real Mosquitto and the real models.

Without a licence: recognition analyses no frame and reads no template, enrolment is refused,
the door still opens on a signed command. ``licence/install`` works only when signed by an
operator; a tampered licence is refused with its state and an ``event/security``. The
retained ``licence`` topic is read with the real ``mosquitto_sub``; no MQTT payload carries
a raw identifier.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
import pytest_asyncio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from facegate.drivers.camera import SimulatedCamera
from facegate.drivers.gpio import SimulatedGpio
from facegate.handlers.commands import first_error
from facegate.policy.licence import issue_test_licence
from facegate.runtime.app.cli.fleet_cmd import Fleet
from facegate.runtime.app.device import Device
from facegate.runtime.config import load_config

from ...fixtures.brokers import MosquittoBroker, mosquitto_client
from ...mqtt.device_util import FACES, KEK_ENV, Operator, device_config, fresh_kek, signed
from ...mqtt.util import observe
from .conftest import MACHINE, MODEL, SERIAL, b64pub, write_identifiers

pytestmark = pytest.mark.mosquitto
EVIDENCE = "sha256:" + hashlib.sha256(b"signed consent form").hexdigest()
ALICE = Ed25519PrivateKey.generate()
VENDOR = Ed25519PrivateKey.generate()
EXIT = 22


@pytest.fixture(scope="session")
def licence_model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("licence-model-cache")


def licence_toml(tmp_path: Path) -> str:
    root = write_identifiers(tmp_path / "root")
    return f"""
[licence]
enabled = true
identifier_root = "{root}"
file = "{tmp_path / "device.licence"}"
check_interval_s = 0.5

[licence.vendor_keys]
vendor = "{b64pub(VENDOR)}"
"""


@pytest_asyncio.fixture
async def device(
    tmp_path: Path, mosquitto: MosquittoBroker, licence_model_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Device]:
    monkeypatch.setenv(KEK_ENV, fresh_kek())
    path = device_config(
        tmp_path,
        mosquitto,
        operators={"alice": ALICE},
        cache_dir=licence_model_cache,
        extra=licence_toml(tmp_path),
    )
    path.write_text(
        path.read_text().replace("relay_line = 17\n", f"relay_line = 17\nexit_button_line = {EXIT}\n")
    )
    async with Device(load_config(path), handle_signals=False) as dev:
        assert dev.parts.mqtt is not None and dev.parts.mqtt.commands is not None
        assert dev.parts.recognition is not None
        async with asyncio.timeout(120):
            await dev.parts.mqtt.commands.wait_ready()
            await dev.parts.mqtt.link.wait_connected()
            await dev.parts.recognition.wait_ready()
        await asyncio.sleep(0.3)  # the SUBSCRIBE reaches the broker
        yield dev
        dev.request_shutdown("test over")


@pytest_asyncio.fixture
async def operator(mosquitto: MosquittoBroker) -> AsyncIterator[Operator]:
    async with aiomqtt.Client(mosquitto.host, mosquitto.port, identifier="op-lic") as client:
        await client.subscribe("ops/e2e", qos=1)
        yield Operator(client, ALICE, "alice")


async def grant_consent(policy: Any, subject_id: str) -> str:
    from facegate.policy import AgeBand, ConsentKind, ConsentMethod  # noqa: PLC0415  # short import list

    await policy.consents.record_age(subject_id, birth_date=None, age_band=AgeBand("18_plus"), actor="kiosk")
    record = await policy.consents.grant(
        subject_id=subject_id, kind=ConsentKind.BIOMETRIC, method=ConsentMethod.KIOSK,
        evidence_digest=EVIDENCE, actor="kiosk", activate=True,
    )
    return str(record.consent_id)


async def retained_licence(mosquitto: MosquittoBroker, state: str) -> dict[str, Any]:
    """The retained licence payload as the real mosquitto_sub sees it, once it has ``state``."""
    sub = mosquitto_client("mosquitto_sub")
    if sub is None:
        pytest.skip("mosquitto_sub is not installed")
    body: dict[str, Any] = {}
    async with asyncio.timeout(60):
        while body.get("state") != state:
            proc = await asyncio.create_subprocess_exec(
                sub,
                "-h",
                mosquitto.host,
                "-p",
                str(mosquitto.port),
                "-t",
                "facegate/v1/gate-1/licence",
                "-C",
                "1",
                "-W",
                "5",
                stdout=subprocess.PIPE,
            )
            out, _ = await proc.communicate()
            body = json.loads(out) if out.strip() else {}
            if body.get("state") != state:
                await asyncio.sleep(0.2)
    return body


@pytest.mark.asyncio
async def test_licence_enforced_installed_over_signed_mqtt_and_reported(
    device: Device, operator: Operator, mosquitto: MosquittoBroker, capfd: pytest.CaptureFixture[str]
) -> None:
    recognition, engine, gallery = device.parts.recognition, device.parts.engine, device.parts.gallery
    camera, licence, gpio = device.parts.camera, device.parts.licence, device.parts.gpio
    assert recognition is not None and engine is not None and gallery is not None
    assert isinstance(camera, SimulatedCamera) and isinstance(gpio, SimulatedGpio) and licence is not None
    fp = licence.fingerprint.value
    image = base64.b64encode((FACES / "obama.jpg").read_bytes()).decode()

    async with observe(mosquitto, "facegate/v1/gate-1/#", client_id="outside-lic") as obs:
        missing = await retained_licence(mosquitto, "missing")
        assert missing["fingerprint"] == fp and first_error("licence", missing) is None

        # No licence: frames are not analysed, no template was read, enrolment refused, door works.
        await camera.show(FACES / "obama2.jpg", frames=15, jitter=True)
        async with asyncio.timeout(60):
            while recognition.frames_gated < 5:  # noqa: ASYNC110  # a counter, no event exists
                await asyncio.sleep(0.05)
        assert recognition.frames_analysed == 0 and len(engine.matcher) == 0
        reply = await operator.call("enroll", {"image_b64": image, "consent_ref": "c-1"})
        assert reply["ok"] is False and reply["code"] == "licence_required", reply
        mark = len(obs.messages)
        reply = await operator.call("open", {})
        assert reply["ok"] is True, reply
        await obs.wait_for(
            lambda s: s.topic.endswith("event/door") and s.json()["kind"] == "unlocked", within=30, start=mark
        )
        await obs.wait_for(  # unlock_s = 1: the relay locks again (a loaded machine takes longer)
            lambda s: s.topic.endswith("event/door") and s.json()["kind"] == "locked", within=60, start=mark
        )
        mark = len(obs.messages)
        gpio.drive_input(EXIT, True)
        await obs.wait_for(
            lambda s: s.topic.endswith("event/door") and s.json()["kind"] == "exit_request",
            within=30,
            start=mark,
        )
        await obs.wait_for(
            lambda s: s.topic.endswith("event/door") and s.json()["kind"] == "unlocked", within=30, start=mark
        )

        # licence/install needs an operator's signature.
        good = issue_test_licence(VENDOR, fp, now=device.clock.wall(), features={"max_subjects": 10})
        args = {"licence_b64": base64.b64encode(good).decode()}
        mallory = Ed25519PrivateKey.generate()
        await operator.client.publish(
            "facegate/v1/gate-1/cmd/licence/install",
            signed("licence/install", args, mallory, "alice", reply_to="ops/e2e", correlation_id="x1"),
            qos=1,
        )
        await asyncio.sleep(1.0)
        assert not licence.path.exists() and licence.status.state.value == "missing"

        # A tampered licence: refused with its state, and an event/security licence_tamper.
        doc = json.loads(good)
        doc["body"]["features"]["max_subjects"] = 10_000
        tampered = {"licence_b64": base64.b64encode(json.dumps(doc).encode()).decode()}
        mark = len(obs.messages)
        reply = await operator.call("licence/install", tampered)
        assert reply["ok"] is False and reply["code"] == "invalid_signature", reply
        alarm = await obs.wait_for(lambda s: s.topic.endswith("event/security"), within=30, start=mark)
        assert alarm.json()["kind"] == "licence_tamper"

        reply = await operator.call("licence/install", args)
        assert reply["ok"] is True and reply["result"]["state"] == "valid", reply
        valid = await retained_licence(mosquitto, "valid")
        assert valid["features"] == {"max_subjects": 10} and valid["days_left"] > 29
        assert first_error("licence", valid) is None

        # With a licence: the deferred gallery loads, enrolment works, the face is recognised.
        policy = device.parts.policy
        assert policy is not None
        consent = await grant_consent(policy, "emp-7")
        reply = await operator.call("enroll", {"image_b64": image, "consent_ref": consent})
        assert reply["ok"] is True, reply
        assert gallery.loaded.is_set() and engine.matcher.subject_count == 1
        mark = len(obs.messages)
        await camera.show(FACES / "obama2.jpg", frames=30, jitter=True)
        granted = await obs.wait_for(
            lambda s: s.topic.endswith("event/access") and s.json()["decision"] == "granted",
            within=60,
            start=mark,
        )
        assert granted.json()["subject_id"] == "emp-7"

    # fleet watch folds the same retained topic into its licence column.
    fleet = Fleet("facegate/v1")
    for m in obs.messages:
        fleet.update(m.topic, m.payload, 0.0)
    assert fleet.rows["gate-1"].licence.startswith("valid ("), fleet.rows
    logs = capfd.readouterr()
    assert "licence.state" in logs.out + logs.err  # the device's log lines are in this capture
    for m in obs.messages:
        if "/cmd/" in m.topic:
            continue
        for raw in (SERIAL, MACHINE, MODEL):
            assert raw.encode() not in m.payload, m.topic
    for raw in (SERIAL, MACHINE, MODEL):
        assert raw not in logs.out + logs.err
