"""Phase 2 of the composition root for MQTT: the link and the services that use it.

The transport (:mod:`facegate.runtime.mqtt`) knows nothing of events or
commands; this module joins it to the MQTT-out handlers
(:mod:`facegate.handlers.reporting`: durable events, names, metrics, Home
Assistant discovery) and the MQTT-in handler (:mod:`facegate.handlers.commands`),
each built with its real collaborators as constructor arguments.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import structlog

from ...handlers.commands import CommandService, Tunable, Tunables, VerbParts, build_command_service
from ...handlers.reporting.codec import EventCodec
from ...handlers.reporting.doorstate import DoorStatePublisher
from ...handlers.reporting.durable import DurableEvents
from ...handlers.reporting.homeassistant import HomeAssistantDiscovery
from ...handlers.reporting.metrics import LinkMetrics
from ...handlers.reporting.names import SubjectNames
from ...policy.device_keys import SigningKey
from ...storage import Store
from ..bus import EventBus
from ..clock import Clock
from ..config import DeviceConfig, LoadedConfig
from ..health import HealthMonitor
from ..mqtt import MqttLink, TelemetryPublisher
from ..service import Service

_log = structlog.get_logger("facegate.mqtt")


@dataclass(frozen=True, kw_only=True)
class LinkParts:
    """The MQTT link and its services (None: not in this build or not configured)."""

    link: MqttLink
    metrics: LinkMetrics
    events: DurableEvents | None = None
    """None without a store: events are then not published (logged at start)."""
    names: SubjectNames | None = None
    """Display names for ``event/access`` when ``events.include_names`` is on."""
    door_state: DoorStatePublisher | None = None
    """The retained ``door/state`` topic (lock, door, fire)."""
    commands: CommandService | None = None
    homeassistant: HomeAssistantDiscovery | None = None

    @property
    def services(self) -> tuple[Service, ...]:
        """Supervised in this order."""
        found: list[Service | None] = [
            self.link,
            self.events,
            self.names,
            self.metrics,
            self.door_state,
            self.commands,
            self.homeassistant,
        ]
        return tuple(s for s in found if s is not None)


def new_link(
    loaded: LoadedConfig, *, clock: Clock, bus: EventBus, health: HealthMonitor, store: Store | None = None
) -> tuple[MqttLink, LinkMetrics]:
    """The link (telemetry = the health snapshot, metrics included) and its metrics."""
    metrics = LinkMetrics(bus, clock, outbox=store.outbox if store is not None else None)
    health.include(metrics.health)  # fps, latency_ms, outbox_backlog, gallery_size
    link = MqttLink.from_config(loaded, clock=clock, bus=bus, telemetry=health.snapshot)
    health.register("mqtt", link.health)  # refused-publish alarm in telemetry (issue 10.1)
    return link, metrics


async def build_link_parts(
    loaded: LoadedConfig,
    link: MqttLink,
    metrics: LinkMetrics,
    *,
    clock: Clock,
    bus: EventBus,
    store: Store | None,
    door_health: Callable[[], Mapping[str, Any]] | None = None,
    parts: VerbParts | None = None,
) -> LinkParts:
    """Events, names, door state, commands and discovery over ``link`` (from :func:`new_link`).

    ``parts``: the device parts the command verbs act on (none: only ``ping`` and ``set``).
    """
    cfg = loaded.config
    events: DurableEvents | None = None
    names: SubjectNames | None = None
    if store is None:
        _log.error("mqtt.events_not_durable", reason="no store: events are not published")
    else:
        if cfg.events.include_names:
            names = SubjectNames(store.gallery, clock=clock, bus=bus)
        outbox = store.outbox
        events = DurableEvents(
            bus=bus,
            outbox=outbox,
            link=link,
            # Names are never stored: the outbox row carries the subject id only and the
            # drain adds the display name at publish time (issue 10.4, RULES R30).
            codec=EventCodec(link.topics.device_id),
            base_topic=link.topics.base,
            clock=clock,
            on_access=metrics.on_access,
            redeliver_window_s=cfg.mqtt.redeliver_window_s,
            names=names,
        )
    commands: CommandService | None = None
    if cfg.commands.enabled:
        commands = await build_command_service(
            cfg.commands,
            link,
            bus=bus,
            clock=clock,
            nonce_store=store.kv if store is not None else None,
            tunables=_tunables(link.telemetry),
            parts=parts,
            result_store=store.command_results if store is not None else None,
            # replies are signed with the device key (issue 10.9)
            signer=await SigningKey.load(store) if store is not None else None,
        )
        if not cfg.commands.operators:
            _log.warning("commands.no_operators", detail="only 'ping' can succeed")
    door_state = None
    if door_health is not None:
        door_state = DoorStatePublisher(link, door_health, bus=bus, clock=clock)
    return LinkParts(
        link=link,
        metrics=metrics,
        events=events,
        names=names,
        door_state=door_state,
        commands=commands,
        homeassistant=_discovery(cfg, link, clock),
    )


def _tunables(telemetry: TelemetryPublisher | None) -> Tunables:
    """What ``cmd/set`` may change at run time."""
    tunables = Tunables()
    if telemetry is not None:
        tel = telemetry

        def set_interval(value: float) -> None:
            tel.interval_s = value  # the setter checks the type and range

        tunables.register("telemetry_interval_s", Tunable("seconds between telemetry", set_interval))
    return tunables


def _discovery(cfg: DeviceConfig, link: MqttLink, clock: Clock) -> HomeAssistantDiscovery | None:
    """Home Assistant discovery when configured; the lock only with an operator bridge."""
    if not cfg.homeassistant.discovery:
        return None
    ha_cfg = cfg.homeassistant
    bridge = ha_cfg.lock_bridge
    operators: Mapping[str, object] = cfg.commands.operators
    if ha_cfg.lock and not bridge:
        _log.warning("mqtt.homeassistant.lock_disabled", reason="no lock_bridge: unlock cannot be signed")
    elif ha_cfg.lock and bridge not in operators:
        _log.warning("mqtt.homeassistant.lock_disabled", reason="lock_bridge is not an operator")
    return HomeAssistantDiscovery(
        link,
        clock=clock,
        prefix=ha_cfg.discovery_prefix,
        lock=ha_cfg.lock and bool(bridge) and bridge in operators,
    )
