"""Restriction and legal hold over signed MQTT on a whole Device, a real store and a real Mosquitto.

Recognition is off (no models): subjects are enrolled through the policy with
real vectors; the matcher side of restriction is proved in
tests/policy/test_restrict_hold.py. Everything here is observed as an outside
subscriber sees it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiomqtt
import numpy as np
import pytest
import pytest_asyncio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from facegate.handlers.commands import first_error
from facegate.policy import Policy
from facegate.runtime.app.device import Device
from facegate.runtime.config import load_config

from ..fixtures.brokers import MosquittoBroker
from ..mqtt.device_util import KEK_ENV, Operator, device_config, fresh_kek
from ..mqtt.test_device_e2e import _assert_private, grant_consent
from ..mqtt.util import Observer, observe

pytestmark = pytest.mark.mosquitto
DPO = Ed25519PrivateKey.generate()


@pytest_asyncio.fixture
async def device(
    tmp_path: Path, mosquitto: MosquittoBroker, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Device]:
    monkeypatch.setenv(KEK_ENV, fresh_kek())
    loaded = load_config(
        device_config(tmp_path, mosquitto, operators={"dpo": DPO}, cache_dir=None, recognition=False)
    )
    async with Device(loaded, handle_signals=False) as dev:
        mqtt = dev.parts.mqtt
        assert mqtt is not None and mqtt.commands is not None
        async with asyncio.timeout(60):
            await mqtt.commands.wait_ready()
            await mqtt.link.wait_connected()
        await asyncio.sleep(0.3)  # the SUBSCRIBE reaches the broker
        yield dev
        dev.request_shutdown("test over")


@pytest_asyncio.fixture
async def operator(mosquitto: MosquittoBroker) -> AsyncIterator[Operator]:
    async with aiomqtt.Client(mosquitto.host, mosquitto.port, identifier="op-rights") as client:
        await client.subscribe("ops/e2e", qos=1)
        yield Operator(client, DPO, "dpo")


async def _enrol(policy: Policy, subject_id: str, seed: int) -> None:
    await grant_consent(policy, subject_id)
    x = np.random.default_rng(seed).standard_normal((1, 128)).astype(np.float32)
    await policy.enrol_subject(subject_id, x / np.linalg.norm(x), "sface-2021dec", actor="kiosk")


def _privacy(obs: Observer, kind: str, start: int) -> Any:
    return obs.wait_for(
        lambda s: s.topic.endswith("event/privacy") and s.json()["kind"] == kind, within=30, start=start
    )


@pytest.mark.asyncio
async def test_restrict_and_legal_hold_over_signed_mqtt(
    device: Device, operator: Operator, mosquitto: MosquittoBroker
) -> None:
    policy = device.parts.policy
    assert policy is not None
    await _enrol(policy, "emp-1", 1)
    await _enrol(policy, "emp-2", 2)
    async with observe(mosquitto, "facegate/v1/gate-1/#", client_id="outside-rights") as obs:
        # Restrict: receipted on event/privacy, visible in the export summary.
        mark = len(obs.messages)
        reply = await operator.call("restrict", {"subject_id": "emp-1", "reason": "accuracy_contested"})
        assert reply["ok"] is True and reply["result"]["changed"] is True, reply
        receipt = await _privacy(obs, "restriction", mark)
        assert receipt.json()["receipt_id"] == reply["result"]["receipt_id"]
        assert receipt.json()["detail"] == "restricted" and receipt.json()["subject_id"] == "emp-1"
        reply = await operator.call("export", {"subject_id": "emp-1"})
        assert reply["ok"] and reply["result"]["restricted"] is True, reply
        assert (await operator.call("restrict", {"subject_id": "nobody"}))["code"] == "unknown_subject"
        reply = await operator.call("restrict", {"subject_id": "emp-1", "reason": "Free text!"})
        assert reply["ok"] is False and reply["code"] == "bad_args", reply
        reply = await operator.call("rectify", {"subject_id": "emp-1", "attributes": {"department": "ops"}})
        assert reply["ok"] is False and reply["code"] == "restricted", reply
        reply = await operator.call("unrestrict", {"subject_id": "emp-1"})
        assert reply["ok"] and reply["result"]["changed"] is True, reply

        # Legal hold: the erasure is deferred and says so; the release runs it.
        reply = await operator.call("hold", {"subject_id": "emp-1", "reason": "case:2026/17", "days": 30})
        assert reply["ok"] is True and reply["result"]["scope"] == "subject", reply
        hold_id = reply["result"]["hold_id"]
        mark = len(obs.messages)
        reply = await operator.call("erase", {"subject_id": "emp-1"})
        assert reply["ok"] and reply["result"]["deferred"] is True and reply["result"]["receipt_id"] is None
        deferred = await _privacy(obs, "erasure", mark)
        assert deferred.json()["detail"] == "deferred:legal_hold:request"
        assert deferred.json()["counts"]["deferred"] == 1
        assert await policy.is_enrolled("emp-1")
        reply = await operator.call("hold", {"reason": "case-1", "days": 30})  # neither subject nor device
        assert reply["code"] == "bad_args", reply
        mark = len(obs.messages)
        reply = await operator.call("hold/release", {"hold_id": hold_id})
        assert reply["ok"] and reply["result"]["erasures_run"] == 1, reply
        erased = await _privacy(obs, "erasure", mark)
        assert erased.json()["subject_id"] == "emp-1" and erased.json()["counts"]["templates"] == 1
        assert not await policy.is_enrolled("emp-1") and await policy.is_enrolled("emp-2")
        reply = await operator.call("hold/release", {"hold_id": hold_id})
        assert reply["code"] == "unknown_hold", reply
        await _privacy(obs, "legal_hold", 0)

    actions = [str(r[0]) for r in await policy.store.db.fetchall("SELECT action FROM audit ORDER BY seq")]
    for action in ("restrict", "unrestrict", "legal_hold", "erasure_deferred", "legal_hold_release", "erase"):
        assert action in actions, action
    for m in obs.messages:
        if "/cmd/" in m.topic or not m.topic.endswith("event/privacy"):
            continue
        assert first_error("event_privacy", m.json()) is None, m.json()
        _assert_private(m.json(), m.payload)
