"""The ``facegate.testing`` pytest plugin (entry point ``pytest11: facegate``).

Fixtures (each per test, async, pytest-asyncio):

* ``mqtt_broker``: a real Mosquitto on a free loopback port when the binary is
  installed, else facegate's embedded broker (``--facegate-broker`` forces one;
  the choice is printed in the report header);
* ``mqtt_probe``: an :class:`~facegate.testing.MqttProbe` on that broker;
* ``sim_device``: a running :class:`~facegate.testing.SimDevice` (``gate-1``);
* ``sim_device_factory``: ``await factory(SimOptions(device_id="gate-2"))`` for more.

This module imports only pytest at load time: installing facegate adds no cost
to test sessions that do not use these fixtures.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from .broker import BrokerChoice, BrokerInfo
    from .device import SimDevice, SimOptions
    from .probe import MqttProbe

try:
    import pytest_asyncio
except ImportError:  # pragma: no cover - the fixtures then explain what is missing
    pytest_asyncio = None  # type: ignore[assignment]  # fixtures below say what to install


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("facegate")
    group.addoption(
        "--facegate-broker",
        choices=("auto", "mosquitto", "embedded"),
        default="auto",
        help="broker of the mqtt_broker fixture: auto (Mosquitto when installed), mosquitto, embedded",
    )


def _choice(config: pytest.Config) -> BrokerChoice:
    value = config.getoption("--facegate-broker", default="auto")
    return value if value in ("mosquitto", "embedded") else "auto"


def pytest_report_header(config: pytest.Config) -> str:
    from .broker import broker_choice, mosquitto_binary  # noqa: PLC0415  # light, but only when reporting

    choice = broker_choice(_choice(config))
    where = mosquitto_binary() if choice == "mosquitto" else "in-process amqtt, MQTT 3.1.1"
    extra = "" if pytest_asyncio is not None else " (needs pytest-asyncio: pip install facegate[testing])"
    return f"facegate.testing: mqtt_broker = {choice} ({where}){extra}"


class SimDeviceFactory:
    """Starts more simulated devices on the test's broker; all stop when the test ends."""

    def __init__(self, broker: BrokerInfo, folder: Path, stack: AsyncExitStack) -> None:
        self._broker, self._folder, self._stack = broker, folder, stack
        self.devices: list[SimDevice] = []

    async def __call__(self, options: SimOptions | None = None, **fields: Any) -> SimDevice:
        """``await factory(device_id="gate-2")`` or ``await factory(SimOptions(...))``."""
        from .device import SimDevice, SimOptions  # noqa: PLC0415  # heavy: only when a device is made

        opts = options or SimOptions(**fields)
        dev = SimDevice(self._broker, self._folder / opts.device_id, opts)
        await self._stack.enter_async_context(dev)
        self.devices.append(dev)
        return dev


if pytest_asyncio is not None:

    @pytest_asyncio.fixture
    async def mqtt_broker(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[BrokerInfo]:
        """A broker for this test (see the module docstring)."""
        from .broker import open_test_broker  # noqa: PLC0415  # keeps plugin import light

        async with open_test_broker(tmp_path / "broker", _choice(request.config)) as broker:
            yield broker

    @pytest_asyncio.fixture
    async def mqtt_probe(mqtt_broker: BrokerInfo) -> AsyncIterator[MqttProbe]:
        """An outside subscriber on ``facegate/v1/#`` of the test's broker."""
        from .probe import open_probe  # noqa: PLC0415  # keeps plugin import light

        async with open_probe(mqtt_broker.host, mqtt_broker.port, protocol=mqtt_broker.protocol) as probe:
            yield probe

    @pytest_asyncio.fixture
    async def sim_device_factory(mqtt_broker: BrokerInfo, tmp_path: Path) -> AsyncIterator[SimDeviceFactory]:
        """Make simulated devices on the test's broker; they stop at the end of the test."""
        async with AsyncExitStack() as stack:
            yield SimDeviceFactory(mqtt_broker, tmp_path / "devices", stack)

    @pytest_asyncio.fixture
    async def sim_device(mqtt_probe: MqttProbe, sim_device_factory: SimDeviceFactory) -> SimDevice:
        """A running simulated device ``gate-1`` (the probe subscribed before it started)."""
        return await sim_device_factory()
