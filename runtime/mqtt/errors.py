"""Typed errors of the MQTT link.

Publish failures say what the caller (the durable outbox of issue 6) needs to
know: a :class:`MqttPublishError` means the broker did NOT acknowledge the
message, so it must stay undelivered and be sent again later. Delivery is
at-least-once; a message that failed here may still have reached the broker.
"""

from __future__ import annotations

from ..errors import FacegateError


class MqttLinkError(FacegateError):
    """Base of every error raised on purpose by :mod:`facegate.runtime.mqtt`."""


class MqttTopicError(MqttLinkError, ValueError):
    """A topic suffix or filter is malformed (empty level, wildcard in a publish topic...)."""


class MqttPublishError(MqttLinkError):
    """The broker did not acknowledge a publish; the message must be treated as undelivered."""


class MqttNotConnected(MqttPublishError):
    """The link is not connected, or the connection was lost before the acknowledgement."""


class MqttPublishTimeout(MqttPublishError):
    """The connection stayed up but no acknowledgement arrived within the timeout."""


class MqttPublishRefused(MqttPublishError):
    """The broker acknowledged the publish with a failure reason code (MQTT 5, e.g. 0x87
    not authorized): it did NOT accept it. Keep it pending; it is resent once accepted."""

    def __init__(self, message: str, *, reason: int) -> None:
        super().__init__(message)
        self.reason = reason


class MqttConnectError(MqttLinkError):
    """One connection attempt failed (network, TLS, refused CONNACK). The link retries."""


class MqttTlsConfigError(MqttLinkError):
    """The TLS files in config cannot be loaded into an SSL context."""


class EmbeddedBrokerError(MqttLinkError):
    """The embedded broker cannot start (port in use, non-loopback address, amqtt failure)."""
