"""The MQTT link: connection manager, presence, telemetry and the embedded broker.

Public surface (topic contract in docs/mqtt.md):

* :class:`MqttLink`: the supervised connection (``run()`` / ``async with``),
  ``publish(suffix, payload, qos=, retain=)`` waiting for the acknowledgement,
  ``subscribe(filter, handler)``, ``state`` / ``wait_connected()``.
* :class:`LinkState`, :class:`InboundMessage`, :class:`DeviceTopics`, :class:`Identity`.
* :class:`TelemetryPublisher` (started by the link when given a snapshot provider).
* :class:`EmbeddedBroker`: amqtt in-process on loopback.
* the error tree in :mod:`facegate.runtime.mqtt.errors`.
"""

from __future__ import annotations

from .embedded import EmbeddedBroker
from .errors import (
    EmbeddedBrokerError,
    MqttConnectError,
    MqttLinkError,
    MqttNotConnected,
    MqttPublishError,
    MqttPublishRefused,
    MqttPublishTimeout,
    MqttTlsConfigError,
    MqttTopicError,
)
from .inbound import InboundMessage, MessageHandler
from .link import LinkState, MqttLink
from .options import ClientOptions, client_options, effective_protocol
from .payloads import Identity
from .telemetry import SnapshotProvider, TelemetryPublisher
from .topics import DeviceTopics

__all__ = [
    "ClientOptions",
    "DeviceTopics",
    "EmbeddedBroker",
    "EmbeddedBrokerError",
    "Identity",
    "InboundMessage",
    "LinkState",
    "MessageHandler",
    "MqttConnectError",
    "MqttLink",
    "MqttLinkError",
    "MqttNotConnected",
    "MqttPublishError",
    "MqttPublishRefused",
    "MqttPublishTimeout",
    "MqttTlsConfigError",
    "MqttTopicError",
    "SnapshotProvider",
    "TelemetryPublisher",
    "client_options",
    "effective_protocol",
]
