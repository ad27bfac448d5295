"""Issue 10.9: the device signs replies with its device key; ``facegate cmd`` verifies them.

A real device (store, device key) on a real Mosquitto, the real CLI in a
subprocess, and a spoofer client that watches ``cmd/#`` and answers every
command with a fake ``ok`` (correct correlation, device and verb) before any
device could. With the device key, ``facegate cmd`` rejects the fake.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiomqtt
import pytest
import pytest_asyncio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from facegate.handlers.commands.reply_sig import sign_reply, verify_reply
from facegate.policy.device_keys import device_public_key
from facegate.runtime.app.device import Device
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from ..fixtures.brokers import MosquittoBroker
from .test_cli_and_integrations import device, operator_key, run_cli  # noqa: F401  # fixtures reused

pytestmark = pytest.mark.mosquitto


class _Forger:
    """Signs with a key that is not the device's."""

    def __init__(self) -> None:
        self._key = Ed25519PrivateKey.generate()
        self.key_id = "0123456789abcdef"

    def sign(self, data: bytes) -> bytes:
        return self._key.sign(data)


@pytest_asyncio.fixture
async def spoofer(mosquitto: MosquittoBroker) -> AsyncIterator[list[str]]:
    """Answers every command on ``facegate/v1/+/cmd/#`` with a forged ok; yields the topics answered."""
    answered: list[str] = []
    forger = _Forger()

    async def forge() -> None:
        async with aiomqtt.Client(
            mosquitto.host, mosquitto.port, identifier="spoofer", protocol=aiomqtt.ProtocolVersion.V5
        ) as client:
            await client.subscribe("facegate/v1/+/cmd/#", qos=1)
            ready.set()
            async for m in client.messages:
                parts = str(m.topic).split("/")
                device_id, verb = parts[2], "/".join(parts[4:])
                props = m.properties
                topic = getattr(props, "ResponseTopic", None)
                corr = getattr(props, "CorrelationData", None)
                if topic is None or corr is None:
                    continue
                body = {
                    "verb": verb, "device_id": device_id, "ok": True, "code": "ok", "message": "done",
                    "correlation_id": None, "at": "2026-01-01T00:00:00.000Z", "result": {"pong": True},
                }
                if len(answered) % 2 == 1:  # every other fake is signed, with the wrong key
                    body = sign_reply(body, corr, forger)
                out = Properties(PacketTypes.PUBLISH)
                out.CorrelationData = corr
                await client.publish(topic, json.dumps(body).encode(), qos=1, properties=out)
                answered.append(str(m.topic))

    ready = asyncio.Event()
    task = asyncio.create_task(forge(), name="test.spoofer")
    await asyncio.wait_for(ready.wait(), 10)
    try:
        yield answered
    finally:
        task.cancel()


@pytest.mark.asyncio
@pytest.mark.timeout(240)
async def test_cmd_rejects_a_spoofed_ok_reply_and_accepts_the_signed_one(
    device: Device,  # noqa: F811  # the fixture imported above
    mosquitto: MosquittoBroker,
    spoofer: list[str],
    tmp_path: Path,
) -> None:
    broker = f"{mosquitto.host}:{mosquitto.port}"
    assert device.parts.store is not None
    pub = base64.b64encode(await device_public_key(device.parts.store)).decode()
    # Without the device key the spoofer wins for a device that does not exist (the old behaviour).
    code, out, err = await run_cli("cmd", "ping", "--broker", broker, "--device", "ghost", "--timeout", "5")
    assert code == 0 and json.loads(out)["ok"] is True and "signature not checked" in err
    # With the key: both fakes (unsigned, and signed by another key) are rejected.
    for attempt in range(2):
        code, out, err = await run_cli(
            "cmd", "ping", "--broker", broker, "--device", "ghost", "--device-key", pub, "--timeout", "4"
        )
        assert code == 1 and out == "", (attempt, out, err)
        assert "rejected 1 reply" in err and "no reply from device 'ghost'" in err, err
    assert len(spoofer) == 3
    # The real device's reply verifies (key from a pinned known-devices file on the second call).
    known = tmp_path / "known.json"
    for extra in (["--device-key", pub], []):
        code, out, err = await run_cli(
            "cmd", "ping", "--broker", broker, "--device", "gate-1", "--known-devices", str(known), *extra
        )
        assert code == 0, err
        reply = json.loads(out)
        assert reply["ok"] is True and reply["result"]["pong"] is True and isinstance(reply["sig"], str)
        assert "signature not checked" not in err
    assert json.loads(known.read_text()) == {"facegate/v1/gate-1": pub}
    assert (known.stat().st_mode & 0o777) == 0o600
    # The signature binds the correlation: the same body for another request does not verify.
    assert not verify_reply(reply, b"another-request", base64.b64decode(pub))
