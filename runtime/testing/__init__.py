"""facegate.testing: simulate whole facegate devices in your own async tests.

Installed with facegate and registered as a pytest plugin (``pytest11``), so
``pip install facegate[testing]`` is enough to use the fixtures
``mqtt_broker``, ``mqtt_probe``, ``sim_device`` and ``sim_device_factory``.
The classes are usable without pytest too. Guide: docs/testing.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .broker import BrokerInfo, BrokerStartError, open_test_broker
    from .clock import SimClock
    from .device import SimDevice, SimOptions
    from .parts import Door, Pulse, Relay
    from .probe import MqttProbe, ProbeError, Received, open_probe

_WHERE = {
    "BrokerInfo": "broker", "BrokerStartError": "broker", "open_test_broker": "broker",
    "SimClock": "clock", "SimDevice": "device", "SimOptions": "device",
    "Door": "parts", "Pulse": "parts", "Relay": "parts",
    "MqttProbe": "probe", "ProbeError": "probe", "Received": "probe", "open_probe": "probe",
}


def __getattr__(name: str) -> Any:
    # Lazy: importing facegate.testing (as pytest does for the plugin) loads nothing heavy.
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'facegate.testing' has no attribute {name!r}")
    import importlib  # noqa: PLC0415  # only on first access

    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


__all__ = [
    "BrokerInfo",
    "BrokerStartError",
    "Door",
    "MqttProbe",
    "ProbeError",
    "Pulse",
    "Received",
    "Relay",
    "SimClock",
    "SimDevice",
    "SimOptions",
    "open_probe",
    "open_test_broker",
]
