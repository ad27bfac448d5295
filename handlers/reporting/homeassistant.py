"""Home Assistant MQTT discovery: the device as a lock (optional) plus sensors.

Retained discovery configs go to ``<discovery_prefix>/<component>/facegate_<id>/<object>/config``
after every connect. Every entity's availability is the device's retained
``status`` (``online``/``offline``, so the Last Will marks it unavailable).

Entities: sensors for the last access decision (``event/access``), the
licence state (``licence``), link health (``status``) and the outbox backlog
(``telemetry``); binary sensors for the door contact (device_class door) and
the fire release (device_class safety) from the retained ``door/state``; and a
lock whose state follows the retained ``door/state`` (unlocked/locked) and
whose commands go to ``<base>/ha/lock/set``, ONLY when
``homeassistant.lock`` is on AND ``homeassistant.lock_bridge`` names the
operator bridge: Home Assistant cannot sign, so that topic is NOT a command
topic; the bridge, holding an operator key, turns ``UNLOCK`` into a signed
``cmd/open``. Without a bridge the lock config topic gets an empty retained
payload, which removes a lock discovered earlier: no unsigned unlock path exists.
"""

from __future__ import annotations

from typing import Any, Protocol

import structlog

from ...runtime.clock import Clock
from ...runtime.mqtt.errors import MqttPublishError
from ...runtime.mqtt.payloads import Identity, encode
from ...runtime.mqtt.topics import DeviceTopics

_log = structlog.get_logger("facegate.mqtt")

LOCK_SET = "ha/lock/set"


class _Link(Protocol):
    @property
    def topics(self) -> DeviceTopics: ...
    @property
    def identity(self) -> Identity: ...
    @property
    def connection_number(self) -> int: ...
    async def wait_connected(self) -> None: ...
    async def publish_to(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> None: ...


def lock_config_topic(topics: DeviceTopics, prefix: str = "homeassistant") -> str:
    """The lock entity's discovery topic (also cleared when no bridge is configured)."""
    # The node id keeps the device id verbatim ('-' is valid in a discovery node id), so the
    # documented ACL line 'pattern write homeassistant/+/facegate_%u/#' matches (issue 10.8).
    return f"{prefix}/lock/facegate_{topics.device_id}/door/config"


def discovery_configs(
    topics: DeviceTopics, identity: Identity, *, prefix: str = "homeassistant", lock: bool = False
) -> dict[str, dict[str, Any]]:
    """topic -> discovery config payload for every entity of one device."""
    node = f"facegate_{topics.device_id.replace('-', '_')}"  # unique ids: unchanged (stable entities)
    at = f"facegate_{topics.device_id}"  # topic node id: verbatim, as the ACL pattern expects
    device = {
        "identifiers": [f"facegate-{topics.device_id}"],
        "name": f"facegate {topics.device_id}",
        "manufacturer": "facegate",
        "model": "gated entry device",
        "sw_version": identity.version,
    }
    common = {
        "availability_topic": topics.status,
        "availability_template": "{{ value_json.state }}",
        "payload_available": "online",
        "payload_not_available": "offline",
        "device": device,
    }
    base = topics.base
    out: dict[str, dict[str, Any]] = {
        f"{prefix}/sensor/{at}/last_access/config": common
        | {
            "name": "Last access decision",
            "unique_id": f"{node}_last_access",
            "state_topic": f"{base}/event/access",
            "value_template": "{{ value_json.decision }}",
            "json_attributes_topic": f"{base}/event/access",
            "json_attributes_template": "{{ {'reason': value_json.reason, 'at': value_json.at} | tojson }}",
        },
        f"{prefix}/sensor/{at}/licence/config": common
        | {
            "name": "Licence",
            "unique_id": f"{node}_licence",
            "state_topic": f"{base}/licence",
            "value_template": "{{ value_json.state }}",
        },
        f"{prefix}/sensor/{at}/health/config": common
        | {
            "name": "Health",
            "unique_id": f"{node}_health",
            "state_topic": topics.status,
            "value_template": "{{ value_json.state }}",
            "entity_category": "diagnostic",
        },
        f"{prefix}/sensor/{at}/outbox_backlog/config": common
        | {
            "name": "Event backlog",
            "unique_id": f"{node}_outbox_backlog",
            "state_topic": topics.telemetry,
            "value_template": "{{ value_json.outbox_backlog | default(0) }}",
            "entity_category": "diagnostic",
            "state_class": "measurement",
        },
        f"{prefix}/binary_sensor/{at}/door_contact/config": common
        | {
            "name": "Door contact",
            "unique_id": f"{node}_door_contact",
            "device_class": "door",
            "state_topic": f"{base}/door/state",
            "value_template": "{{ 'ON' if value_json.door == 'open' else 'OFF' }}",
        },
        f"{prefix}/binary_sensor/{at}/fire/config": common
        | {
            "name": "Fire release",
            "unique_id": f"{node}_fire",
            "device_class": "safety",
            "state_topic": f"{base}/door/state",
            "value_template": "{{ 'OFF' if value_json.fire == 'normal' else 'ON' }}",
        },
    }
    if lock:
        out[lock_config_topic(topics, prefix)] = common | {
            "name": "Door",
            "unique_id": f"{node}_door",
            "command_topic": f"{base}/{LOCK_SET}",
            "payload_unlock": "UNLOCK",
            "payload_lock": "LOCK",
            # The retained door/state topic: HA knows the lock state after its own restart.
            "state_topic": f"{base}/door/state",
            "value_template": "{{ value_json.lock | upper }}",
            "state_unlocked": "UNLOCKED",
            "state_locked": "LOCKED",
            "optimistic": False,
        }
    return out


class HomeAssistantDiscovery:
    """Service ``mqtt.homeassistant``: publishes the retained configs after every connect."""

    def __init__(
        self, link: _Link, *, clock: Clock, prefix: str, lock: bool, name: str = "mqtt.homeassistant"
    ) -> None:
        self._link = link
        self._clock = clock
        self._configs = discovery_configs(link.topics, link.identity, prefix=prefix, lock=lock)
        # Without a bridge, make sure no lock discovered earlier survives (empty retained = delete).
        self._clear = [] if lock else [lock_config_topic(link.topics, prefix)]
        self._name = name
        self.published_for = 0
        """The connection number the configs were last published on."""

    @property
    def name(self) -> str:
        return self._name

    async def run(self) -> None:
        while True:
            await self._link.wait_connected()
            number = self._link.connection_number
            if number != self.published_for:
                try:
                    for topic, config in self._configs.items():
                        await self._link.publish_to(topic, encode(config), qos=1, retain=True)
                    for topic in self._clear:
                        await self._link.publish_to(topic, b"", qos=1, retain=True)
                    self.published_for = number
                except MqttPublishError as exc:
                    _log.debug("mqtt.homeassistant.retry", detail=str(exc))
            await self._clock.sleep(1.0)
