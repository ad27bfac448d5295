"""A whole-device config for end-to-end tests: real store, real models, simulated camera and GPIO."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from pathlib import Path
from typing import Any

import aiomqtt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from facegate.handlers.commands import envelope
from facegate.storage.crypto import new_key
from facegate.storage.kek import encode_key

from ..fixtures.brokers import BrokerHandle

FACES = Path(__file__).resolve().parents[1] / "data" / "faces"
KEK_ENV = "FACEGATE_E2E_KEK"


def pub_b64(key: Ed25519PrivateKey) -> str:
    return base64.b64encode(key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()


def fresh_kek() -> str:
    """A new KEK as the text the ``env`` KEK source reads."""
    return encode_key(new_key())


def device_config(
    tmp_path: Path,
    broker: BrokerHandle,
    *,
    operators: dict[str, Ed25519PrivateKey],
    cache_dir: Path | None,
    recognition: bool = True,
    device_id: str = "gate-1",
    extra: str = "",
) -> Path:
    """A firmware config for a full device on ``broker`` with its store in ``tmp_path``."""
    ops = ", ".join(f'{name} = "{pub_b64(k)}"' for name, k in operators.items())
    rec = (
        f'[recognition]\nenabled = true\n[recognition.models]\ncache_dir = "{cache_dir}"\n'
        if recognition
        else "[recognition]\nenabled = false\n"
    )
    text = f"""
[device]
id = "{device_id}"
site = "e2e"

[mqtt]
broker = "external"
host = "{broker.host}"
port = {broker.port}
protocol = "5"
keepalive = 5
reconnect_min_s = 0.05
reconnect_max_s = 0.3
telemetry_interval_s = 60.0

[lifecycle]
watchdog = false
shutdown_grace_s = 5.0

[logging]
level = "warning"

[camera]
driver = "simulated"
fps = 15.0

[gpio]
driver = "simulated"
relay_line = 17
lock_type = "fail_secure"
unlock_s = 1.0

[storage]
path = "{tmp_path / "device.db"}"
kek_source = "env"
kek_env = "{KEK_ENV}"

{rec}
[commands]
operators = {{ {ops} }}
window_s = 60.0
max_payload_bytes = 4000000
{extra}
"""
    path = tmp_path / "device.toml"
    path.write_text(text)
    return path


def signed(verb: str, args: dict[str, Any], key: Ed25519PrivateKey, operator: str, **kw: Any) -> bytes:
    kw.setdefault("device_id", "gate-1")
    kw.setdefault("ts_ms", int(time.time() * 1000))
    return envelope.encode(envelope.build(verb, args, key=key, operator=operator, **kw))


class Operator:
    """An MQTT 3.1.1 operator client: ``reply_to`` and ``correlation_id`` travel in the envelope."""

    def __init__(self, client: aiomqtt.Client, key: Ed25519PrivateKey, name: str) -> None:
        self.client, self.key, self.name = client, key, name
        self.n = 0

    async def call(self, verb: str, args: dict[str, Any], within: float = 60.0) -> dict[str, Any]:
        self.n += 1
        corr = f"c{self.n}"
        payload = signed(verb, args, self.key, self.name, reply_to="ops/e2e", correlation_id=corr)
        await self.client.publish(f"facegate/v1/gate-1/cmd/{verb}", payload, qos=1)
        async with asyncio.timeout(within):
            async for m in self.client.messages:
                assert isinstance(m.payload, bytes)
                body = json.loads(m.payload)
                if isinstance(body, dict) and body.get("correlation_id") == corr:
                    return body
        raise AssertionError("unreachable")
