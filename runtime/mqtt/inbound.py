"""Messages received on subscribed filters, decoupled from aiomqtt's types."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiomqtt


@dataclass(frozen=True, kw_only=True, slots=True)
class InboundMessage:
    """A message received on a subscribed filter (MQTT 5 reply properties when present)."""

    topic: str
    payload: bytes
    qos: int
    retain: bool
    response_topic: str | None = None
    correlation_data: bytes | None = None


MessageHandler = Callable[[InboundMessage], Awaitable[None]]


def from_aiomqtt(message: aiomqtt.Message) -> InboundMessage:
    """Convert; reply properties are read only when the broker sent them (MQTT 5)."""
    raw: Any = message.payload
    if isinstance(raw, bytes | bytearray):
        body = bytes(raw)
    elif raw is None:
        body = b""
    else:
        body = str(raw).encode()
    props: Any = message.properties
    response_topic = getattr(props, "ResponseTopic", None)
    correlation = getattr(props, "CorrelationData", None)
    return InboundMessage(
        topic=message.topic.value,
        payload=body,
        qos=message.qos,
        retain=message.retain,
        response_topic=response_topic if isinstance(response_topic, str) else None,
        correlation_data=bytes(correlation) if isinstance(correlation, bytes | bytearray) else None,
    )
