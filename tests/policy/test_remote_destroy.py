"""Remote ``destroy`` over signed MQTT: two distinct operators, final receipt, no retained status,
the device refuses to start until re-initialised. Whole Device, real store, real Mosquitto."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiomqtt
import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from facegate.handlers.commands import envelope
from facegate.policy.remote_destroy import cosign
from facegate.runtime.app.device import Device
from facegate.runtime.clock import SystemClock
from facegate.runtime.config import load_config
from facegate.storage import Store
from facegate.storage.errors import KekSourceError

from ..fixtures.brokers import MosquittoBroker
from ..mqtt.device_util import KEK_ENV, device_config, fresh_kek, signed
from ..mqtt.test_device_e2e import grant_consent
from ..mqtt.util import observe

pytestmark = pytest.mark.mosquitto
ALICE, BOB, EVE = (Ed25519PrivateKey.generate() for _ in range(3))
BASE = "facegate/v1/gate-1"


async def _call(client: aiomqtt.Client, args: dict[str, Any], *, nonce: str, n: int) -> dict[str, Any]:
    payload = signed("destroy", args, ALICE, "alice", nonce=nonce, reply_to="ops/rd", correlation_id=f"d{n}")
    await client.publish(f"{BASE}/cmd/destroy", payload, qos=1)
    async with asyncio.timeout(60):
        async for m in client.messages:
            body = json.loads(bytes(m.payload))  # type: ignore[arg-type]  # replies are bytes
            if body.get("correlation_id") == f"d{n}":
                return body  # type: ignore[no-any-return]  # a JSON object
    raise AssertionError("unreachable")


async def _retained_status(broker: MosquittoBroker) -> list[bytes]:
    """Retained status messages a new subscriber gets (a marker publish bounds the wait)."""
    seen: list[bytes] = []
    async with aiomqtt.Client(broker.host, broker.port, identifier="late-joiner") as client:
        await client.subscribe(f"{BASE}/status", qos=1)
        await client.subscribe("probe/marker", qos=1)
        await client.publish("probe/marker", b"x", qos=1)
        async with asyncio.timeout(30):
            async for m in client.messages:
                if str(m.topic) == "probe/marker":
                    return seen
                if m.payload:
                    seen.append(bytes(m.payload))  # type: ignore[arg-type]  # bytes payloads
    return seen


@pytest.mark.asyncio
async def test_remote_destroy_needs_two_operators_then_wipes_and_leaves_nothing_retained(
    tmp_path: Path, mosquitto: MosquittoBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEK_ENV, fresh_kek())
    cfg = device_config(
        tmp_path,
        mosquitto,
        operators={"alice": ALICE, "bob": BOB},
        cache_dir=None,
        recognition=False,
    )
    async with (
        observe(mosquitto, f"{BASE}/#", client_id="outside-rd") as obs,
        Device(load_config(cfg), handle_signals=False) as dev,
        aiomqtt.Client(mosquitto.host, mosquitto.port, identifier="op-rd") as client,
    ):
        await client.subscribe("ops/rd", qos=1)
        mqtt = dev.parts.mqtt
        assert mqtt is not None and mqtt.commands is not None
        async with asyncio.timeout(60):
            await mqtt.commands.wait_ready()
            await mqtt.link.wait_connected()
        policy = dev.parts.policy
        assert policy is not None
        await grant_consent(policy, "emp-1")
        x = np.random.default_rng(5).standard_normal((1, 128)).astype(np.float32)
        await policy.enrol_subject("emp-1", x / np.linalg.norm(x), "sface-2021dec", actor="kiosk")
        await obs.wait_for(lambda s: s.topic.endswith("/status") and bool(s.payload), within=30)

        nonce = [envelope.new_nonce() for _ in range(5)]
        confirm = {"confirm_device_id": "gate-1"}
        # One operator alone (co-signing herself), an outsider, a co-signature for another command.
        reply = await _call(
            client,
            confirm | {"cosign": cosign(ALICE, "alice", device_id="gate-1", nonce=nonce[0])},
            nonce=nonce[0],
            n=0,
        )
        assert reply["ok"] is False and reply["code"] == "cosign_required", reply
        reply = await _call(
            client,
            confirm | {"cosign": cosign(EVE, "eve", device_id="gate-1", nonce=nonce[1])},
            nonce=nonce[1],
            n=1,
        )
        assert reply["code"] == "bad_cosign", reply
        reply = await _call(
            client,
            confirm | {"cosign": cosign(BOB, "bob", device_id="gate-1", nonce=nonce[0])},
            nonce=nonce[2],
            n=2,
        )
        assert reply["code"] == "bad_cosign", reply
        wrong = {
            "confirm_device_id": "gate-2",
            "cosign": cosign(BOB, "bob", device_id="gate-1", nonce=nonce[3]),
        }
        reply = await _call(client, wrong, nonce=nonce[3], n=3)
        assert reply["code"] == "bad_args", reply
        assert await policy.is_enrolled("emp-1")  # nothing happened

        mark = len(obs.messages)
        reply = await _call(
            client,
            confirm | {"cosign": cosign(BOB, "bob", device_id="gate-1", nonce=nonce[4])},
            nonce=nonce[4],
            n=4,
        )
        assert reply["ok"] is True, reply
        assert (
            reply["result"]["destroyed"]
            and reply["result"]["subjects"] == 1
            and reply["result"]["retained_cleared"]
        )
        final = await obs.wait_for(
            lambda s: s.topic.endswith("event/privacy") and s.json()["kind"] == "teardown",
            within=30,
            start=mark,
        )
        assert final.json()["counts"]["subjects"] == 1
        assert not await policy.is_enrolled("emp-1")
        actions = [
            str(r[0])
            for r in await policy.store.db.fetchall("SELECT actor FROM audit WHERE action = 'teardown'")
        ]
        assert actions == ["remote:alice+bob"]
        assert await _retained_status(mosquitto) == []
        dev.request_shutdown("test over")
    # Clean shutdown published no offline status either; and the device refuses to start.
    assert await _retained_status(mosquitto) == []
    with pytest.raises(KekSourceError, match="keys init"):
        async with Store.from_config(
            load_config(cfg).config.storage, clock=SystemClock(), register_kek=False
        ):
            pass
