"""Signed operator commands from a test: an MQTT client holding the test operator's key."""

from __future__ import annotations

import asyncio
import json
import secrets
from typing import Any

import aiomqtt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ..handlers.commands import envelope
from ..runtime.clock import Clock
from .broker import BrokerInfo


class CommandClient:
    """Sends ``<prefix>/<device>/cmd/<verb>`` signed envelopes and waits for each reply.

    ``reply_to`` and ``correlation_id`` travel inside the envelope, so this works
    on MQTT 3.1.1 and 5 alike. Timestamps come from the device's clock.
    """

    def __init__(
        self, broker: BrokerInfo, prefix: str, device_id: str, *, key: Ed25519PrivateKey, operator: str,
        clock: Clock,
    ) -> None:
        self._broker, self._prefix, self._device = broker, prefix, device_id
        self._key, self._operator, self._clock = key, operator, clock
        self._reply_to = f"facegate-test/replies/{device_id}/{secrets.token_hex(4)}"
        self._client: aiomqtt.Client | None = None
        self._lock = asyncio.Lock()
        self._n = 0

    async def __aenter__(self) -> CommandClient:
        version = aiomqtt.ProtocolVersion.V5 if self._broker.protocol == "5" else aiomqtt.ProtocolVersion.V311
        client = aiomqtt.Client(
            self._broker.host, self._broker.port, protocol=version,
            identifier=f"facegate-test-operator-{secrets.token_hex(4)}",
        )
        await client.__aenter__()
        try:
            await client.subscribe(self._reply_to, qos=1)
        except BaseException:
            await client.__aexit__(None, None, None)
            raise
        self._client = client
        return self

    async def __aexit__(self, *exc: object) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.__aexit__(None, None, None)

    async def call(self, verb: str, args: dict[str, Any], *, timeout: float = 60.0) -> dict[str, Any]:
        """Publish one signed command and return its parsed reply."""
        client = self._client
        if client is None:
            raise RuntimeError("the command client is closed")
        async with self._lock:
            self._n += 1
            corr = f"test-{self._n}"
            env = envelope.build(
                verb, args, key=self._key, operator=self._operator, device_id=self._device,
                ts_ms=int(self._clock.wall() * 1000), reply_to=self._reply_to, correlation_id=corr,
            )
            topic = f"{self._prefix}/{self._device}/cmd/{verb}"
            await client.publish(topic, envelope.encode(env), qos=1)
            async with asyncio.timeout(timeout):
                async for message in client.messages:
                    body = json.loads(bytes(message.payload)) if isinstance(message.payload, bytes) else None
                    if isinstance(body, dict) and body.get("correlation_id") == corr:
                        return body
        raise AssertionError(f"the reply stream ended before the reply to {verb}")
