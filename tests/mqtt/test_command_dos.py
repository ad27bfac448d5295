"""Issue 10.3: hostile commands cannot crash the command service or delay a valid lockdown."""

from __future__ import annotations

import json

import aiomqtt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from facegate.handlers.commands import envelope
from facegate.runtime.events import SecurityKind

from ..fixtures.brokers import MosquittoBroker
from .test_commands import BASE, Device, Operator, device, now_ms, operator, signed
from .util import until

__all__ = ["device", "operator"]  # fixtures re-used from test_commands

pytestmark = pytest.mark.mosquitto


def deep_args(depth: int = 980, *, key: Ed25519PrivateKey | None = None) -> bytes:
    """An 'open' whose args nest ``depth`` levels: parses, then breaks recursive walkers."""
    body = envelope.build("open", {}, device_id="gate-1", ts_ms=now_ms(), operator="alice", key=key)
    body.pop("sig", None)
    body["operator"] = "alice"
    body["sig"] = "A" * 86 + "=="
    text = json.dumps(body)
    return text.replace('"args": {}', '"args": {"x": ' + "[" * depth + "]" * depth + "}").encode()


@pytest.mark.asyncio
async def test_deeply_nested_args_get_an_error_reply_and_the_worker_survives(
    device: Device, operator: Operator
) -> None:
    reply = await operator.call("open", deep_args(40), within=10)
    assert reply["ok"] is False and reply["code"] == "too_deep", reply
    # Near the interpreter's recursion limit a document parses and then breaks the
    # canonical JSON of the signature check (the old crash); the exact depth depends
    # on the stack, so sweep the band. Each one is refused; none crashes the worker.
    for depth in range(940, 1000):
        reply = await operator.call("open", deep_args(depth), within=10)
        assert reply["ok"] is False and reply["code"] in {"too_deep", "bad_json"}, (depth, reply)
    # The same worker still serves the next, valid command.
    assert (await operator.call("open", signed("open"), within=10))["ok"] is True
    assert device.actuations == 1
    rejected = SecurityKind.COMMAND_REJECTED
    await until(  # the collector task copies the bus events
        lambda: any(e.kind is rejected and "too_deep" in e.detail for e in device.security), within=60
    )


@pytest.mark.asyncio
async def test_a_flood_of_bad_commands_does_not_delay_a_signed_lockdown(
    device: Device, operator: Operator, mosquitto: MosquittoBroker
) -> None:
    mallory = Ed25519PrivateKey.generate()
    bad = [
        deep_args(980),
        signed("lockdown", key=mallory),  # forged lockdowns compete for the same topic
        signed("open", key=mallory),
        b"{" * 5000,
    ]
    flood_n = 1200
    async with aiomqtt.Client(mosquitto.host, mosquitto.port, identifier="mallory") as attacker:
        for i in range(flood_n):
            verb = "lockdown" if i % 4 == 1 else "open"
            await attacker.publish(f"{BASE}/cmd/{verb}", bad[i % 4], qos=0)
        # The flood is queued at the device (or still on the wire); now the real lockdown.
        reply = await operator.call("lockdown", signed("lockdown"), within=60)
    assert reply["ok"] is True, reply
    assert device.door.locked_down is True
    stats = device.svc.stats
    # It overtook the backlog: fewer than all the flood messages were handled before it.
    handled = sum(stats.refused.values()) + stats.failed
    assert handled < flood_n, (handled, stats)
    assert stats.urgent >= 1
    assert device.actuations == 0
