"""The MQTT link: connection manager, presence, telemetry and durable events."""
