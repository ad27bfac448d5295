"""Health alarm for publishes the broker refuses (issue 10.1).

A refused publish (MQTT 5 PUBACK with a failure reason code, typically 0x87
not authorized by the broker's ACL) is NOT a delivery: the caller keeps it
pending. :class:`RefusalAlarm` turns refusals into an operator-visible state:

* state ``accepting`` / ``refusing`` (an Enum, changed under a lock, logged
  once per change, never per publish);
* on entering ``refusing`` it raises ``SecurityEvent(PUBLISH_REFUSED)``, which
  the durable pipeline stores and publishes on ``event/security`` once the
  broker accepts the device's publishes again;
* :meth:`health` feeds telemetry: state, refused count, the last reason code
  and the topic *kind* (the part after the device id; no device identifier).
"""

from __future__ import annotations

import asyncio
import enum

import structlog

from ..bus import EventBus
from ..clock import Clock
from ..events import SecurityEvent, SecurityKind
from .errors import MqttPublishRefused
from .topics import DeviceTopics

_log = structlog.get_logger("facegate.mqtt")


class PublishState(enum.StrEnum):
    ACCEPTING = "accepting"
    REFUSING = "refusing"


def topic_kind(topics: DeviceTopics, topic: str) -> str:
    """What a topic is, without any identifier: ``event/access``, ``reply``, ``(external)``."""
    own = topics.base + "/"
    if topic.startswith(own):
        return topic.removeprefix(own)
    if topic.startswith("homeassistant/"):
        return "homeassistant discovery"
    return "(external topic)"


class RefusalAlarm:
    """Tracks whether the broker currently refuses this device's publishes."""

    def __init__(self, topics: DeviceTopics, *, clock: Clock, bus: EventBus | None, name: str) -> None:
        self._topics = topics
        self._clock = clock
        self._bus = bus
        self._name = name
        self._lock = asyncio.Lock()
        self.state = PublishState.ACCEPTING
        self.refused = 0
        self.last_reason = 0
        self.last_kind = ""

    async def on_refused(self, topic: str, exc: MqttPublishRefused) -> None:
        kind = topic_kind(self._topics, topic)
        async with self._lock:
            self.refused += 1
            self.last_reason = exc.reason
            self.last_kind = kind
            if self.state is PublishState.REFUSING:
                return
            self.state = PublishState.REFUSING
        _log.error(
            "mqtt.publish.state",
            component=self._name,
            old=PublishState.ACCEPTING.value,
            new=PublishState.REFUSING.value,
            topic_kind=kind,
            reason=f"0x{exc.reason:02x}",
        )
        if self._bus is not None:
            self._bus.publish(
                SecurityEvent(
                    at=self._clock.wall(),
                    kind=SecurityKind.PUBLISH_REFUSED,
                    detail=(
                        f"the broker refused a publish on {kind} (reason 0x{exc.reason:02x}); "
                        "check its ACL: messages stay pending and are resent once accepted"
                    ),
                    source=self._name,
                )
            )

    async def on_accepted(self, topic: str) -> None:
        if self.state is PublishState.ACCEPTING:  # the common case: no lock, no await
            return
        async with self._lock:
            changed = self.state is PublishState.REFUSING
            self.state = PublishState.ACCEPTING
        if not changed:
            return
        _log.warning(
            "mqtt.publish.state",
            component=self._name,
            old=PublishState.REFUSING.value,
            new=PublishState.ACCEPTING.value,
            topic_kind=topic_kind(self._topics, topic),
        )

    def health(self) -> dict[str, int | str]:
        return {
            "publish_state": self.state.value,
            "publish_refused": self.refused,
            "publish_refused_reason": self.last_reason,
            "publish_refused_topic": self.last_kind,
        }
