"""The command pipeline turns a verb's typed domain failure into a reply, never a crash."""

from __future__ import annotations

import json

import pytest
from facegate.drivers.gpio import GpioClosedError
from facegate.handlers.commands.auth import NonceCache, Verifier
from facegate.handlers.commands.envelope import build, encode
from facegate.handlers.commands.service import CommandService
from facegate.handlers.commands.verbs import Invocation, Result, VerbTable
from facegate.runtime.bus import EventBus
from facegate.runtime.clock import ManualClock
from facegate.runtime.mqtt import InboundMessage
from facegate.runtime.mqtt.topics import DeviceTopics


class _Link:
    topics = DeviceTopics(prefix="facegate/v1", device_id="gate-1")


@pytest.mark.asyncio
async def test_verb_raising_a_domain_error_gets_a_failed_reply() -> None:
    clock = ManualClock()
    secret_detail = "relay on /dev/gpiochip0 owned by alice"

    async def broken(inv: Invocation) -> Result:
        raise GpioClosedError(secret_detail)

    verbs = VerbTable()
    verbs.bind("ping", broken)
    service = CommandService(
        _Link(),  # type: ignore[arg-type]  # handle() only reads the link's topics
        verifier=Verifier(
            {}, device_id="gate-1", clock=clock, window_s=30, nonces=NonceCache(16)
        ),
        verbs=verbs,
        bus=EventBus(),
        clock=clock,
        max_payload_bytes=4096,
    )
    env = build("ping", {}, device_id="gate-1", ts_ms=int(clock.wall() * 1000))
    msg = InboundMessage(
        topic="facegate/v1/gate-1/cmd/ping", payload=encode(env), qos=1, retain=False
    )
    outcome = await service.handle(msg)
    assert (outcome.ok, outcome.code, outcome.verb) == (False, "failed", "ping")
    assert secret_detail not in outcome.message  # exception text may carry personal data
    assert "GpioClosedError" in outcome.message
    assert service.stats.failed == 1
    json.dumps(outcome.result)
