"""Assembly glue: :func:`build` adds the MQTT link and its services to a device.

``runtime/assembly.py`` imports ``facegate.runtime.mqtt.link`` and calls its
``build`` (re-exported from here). This module imports the link and the
services only when :func:`build` runs, so ``link`` can re-export it without
an import cycle.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

from ..bus import EventBus
from ..clock import Clock
from ..config.loader import LoadedConfig
from .embedded import EmbeddedBroker
from .metrics import LinkMetrics


class _Health(Protocol):
    def snapshot(self) -> dict[str, object]: ...

    def register(self, name: str, source: Any) -> None: ...


class AssemblyContext(Protocol):
    """The part of ``facegate.runtime.assembly.AssemblyContext`` that :func:`build` uses."""

    @property
    def loaded(self) -> LoadedConfig: ...
    @property
    def clock(self) -> Clock: ...
    @property
    def bus(self) -> EventBus: ...
    @property
    def health(self) -> _Health: ...


class AssemblyParts(Protocol):
    """The part of ``facegate.runtime.assembly.Parts`` that :func:`build` fills."""

    services: list[Any]
    resources: list[AbstractAsyncContextManager[Any]]
    components: dict[str, object]


def build(ctx: AssemblyContext, parts: AssemblyParts) -> None:
    """Assembly factory: the embedded broker (a resource, when configured), the link and its services.

    The broker is a resource so it opens before and closes after every
    service: the link's clean ``offline`` still reaches it at shutdown.
    Registers components ``mqtt`` (the link) and ``mqtt.broker``; then
    :func:`facegate.runtime.mqtt.services.add_link_services` adds durable
    events, commands, metrics and Home Assistant discovery.
    """
    from .link import MqttLink  # noqa: PLC0415  # link re-exports build: import it when called
    from .services import add_link_services  # noqa: PLC0415  # services import handlers lazily

    cfg = ctx.loaded.config.mqtt
    if cfg.broker == "embedded":
        broker = EmbeddedBroker(cfg.host, cfg.port)
        parts.resources.append(broker)
        parts.components["mqtt.broker"] = broker
    metrics = LinkMetrics(ctx.bus, ctx.clock)
    link = MqttLink.from_config(
        ctx.loaded, clock=ctx.clock, bus=ctx.bus, telemetry=metrics.telemetry(ctx.health.snapshot)
    )
    parts.services.append(link)
    parts.components["mqtt"] = link
    ctx.health.register("mqtt", link.health)  # refused-publish alarm in telemetry (issue 10.1)
    add_link_services(ctx, parts, link, metrics)
