"""MQTT-out handlers: what the device reports over the link (MQTT-in is :mod:`..commands`).

* :mod:`.durable`: bus -> storage outbox -> broker, at least once, in order;
* :mod:`.codec`: every outbound event encoded once, at append time;
* :mod:`.names`: display names for ``event/access`` (only when configured);
* :mod:`.metrics`: fps and stage latencies for telemetry;
* :mod:`.homeassistant`: Home Assistant discovery.

The transport (link, session, topics, payload schemas) is :mod:`facegate.runtime.mqtt`.
"""
