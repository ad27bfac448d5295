"""The composition root: which services a device runs, built from its config.

:func:`assemble` calls one small factory per subsystem, in order. Each factory
reads its config section and adds to :class:`Parts`: supervised services,
safe outputs (entered on every shutdown path), resources (async context
managers opened before any service starts and closed after the safe state),
stopping hooks and named components (handles for the CLI, tests and the
command layer). Later subsystems (camera, recognition, storage) add one
factory to :data:`FACTORIES`; nothing else changes.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any

import structlog

from .bus import EventBus
from .clock import Clock
from .config import DeviceConfig, LoadedConfig
from .health import HealthMonitor
from .service import SafeOutput, Service
from .watchdog import SdNotifier, Watchdog

_log = structlog.get_logger("facegate.assembly")


@dataclass(frozen=True)
class AssemblyContext:
    """What every factory may use: the config and the device's shared parts."""

    loaded: LoadedConfig
    clock: Clock
    bus: EventBus
    health: HealthMonitor
    started: asyncio.Event
    """Set by the Device once every service has been launched."""
    environ: Mapping[str, str]
    repair: bool = False
    """``facegate run --repair``: let the store rebuild after a failed integrity check."""

    @property
    def config(self) -> DeviceConfig:
        """The validated device config."""
        return self.loaded.config


@dataclass
class Parts:
    """The device's building blocks, collected by the factories."""

    services: list[Service] = field(default_factory=list)
    safe_outputs: list[SafeOutput] = field(default_factory=list)
    resources: list[AbstractAsyncContextManager[Any]] = field(default_factory=list)
    on_stopping: list[Callable[[], None]] = field(default_factory=list)
    components: dict[str, object] = field(default_factory=dict)

    def component(self, name: str, kind: type[Any]) -> Any:
        """The component registered as ``name``, checked to be a ``kind``."""
        obj = self.components[name]
        if not isinstance(obj, kind):
            raise TypeError(f"component {name!r} is a {type(obj).__name__}, not {kind.__name__}")
        return obj


Factory = Callable[[AssemblyContext, Parts], None]


def add_watchdog(ctx: AssemblyContext, parts: Parts) -> None:
    """sd_notify READY/WATCHDOG/STOPPING when systemd asked for it."""
    if not ctx.config.lifecycle.watchdog:
        return
    notifier = SdNotifier(ctx.environ)
    if not notifier.enabled:
        return
    dog = Watchdog(notifier, ctx.clock, ctx.started)
    parts.services.append(dog)
    parts.on_stopping.append(dog.stopping)
    parts.components["watchdog"] = dog


def add_gpio_and_door(ctx: AssemblyContext, parts: Parts) -> None:
    """The GPIO driver (a resource), its input watcher and the door controller."""
    # Imported here so the runtime core does not import drivers/handlers at module load.
    from ..drivers.gpio import GpioInputWatcher, build_driver, input_lines  # noqa: PLC0415  # see above
    from ..handlers.door import DoorController  # noqa: PLC0415  # see above

    section = ctx.config.gpio
    driver = build_driver(section, ctx.clock)
    # First resource of all: the outputs reach their safe state before anything else
    # (storage, camera, broker) is opened, and are released last.
    parts.resources.insert(0, driver)
    parts.components["gpio"] = driver
    if input_lines(section):
        parts.services.append(
            GpioInputWatcher(
                driver,
                ctx.bus,
                ctx.clock,
                min_pulse_s=section.input_min_pulse_ms / 1000,
                immediate=[i.input_line for i in driver.interlocks],
            )
        )
    door = DoorController(section, driver, ctx.bus, ctx.clock)
    parts.services.append(door)
    parts.safe_outputs.append(door)
    parts.components["door"] = door
    ctx.health.register("door", door.health)


def add_mqtt(ctx: AssemblyContext, parts: Parts) -> None:
    """The MQTT link (and the embedded broker when configured), from facegate.runtime.mqtt.

    The link module provides ``build(ctx, parts)``; until it exists the device
    runs without MQTT and says so once.
    """
    try:
        module = importlib.import_module(f"{__package__}.mqtt.link")
    except ModuleNotFoundError:
        _log.warning("assembly.mqtt_unavailable", reason="facegate.runtime.mqtt.link missing")
        return
    build: Factory | None = getattr(module, "build", None)
    if build is None:
        _log.warning("assembly.mqtt_unavailable", reason="mqtt.link has no build(ctx, parts)")
        return
    build(ctx, parts)


def _subsystem(module: str) -> Factory:
    """The ``build(ctx, parts)`` factory of a subsystem module, imported on use."""

    def factory(ctx: AssemblyContext, parts: Parts) -> None:
        build: Factory = importlib.import_module(f"facegate.{module}").build
        build(ctx, parts)

    factory.__name__ = f"build_{module.replace('.', '_')}"
    return factory


FACTORIES: list[Factory] = [
    add_watchdog,
    _subsystem("storage.assembly"),
    add_gpio_and_door,
    _subsystem("drivers.camera.assembly"),
    _subsystem("handlers.recognition.assembly"),
    _subsystem("handlers.access.assembly"),
    _subsystem("policy.assembly"),
    _subsystem("policy.licence.assembly"),
    add_mqtt,
]
"""Subsystem factories in start order (resources open and services start in this order)."""


def assemble(ctx: AssemblyContext, factories: list[Factory] | None = None) -> Parts:
    """Run every factory (default :data:`FACTORIES`) and return the collected parts."""
    parts = Parts()
    for factory in FACTORIES if factories is None else factories:
        factory(ctx, parts)
    return parts
