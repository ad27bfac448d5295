"""The link's services, added to the device by :func:`add_link_services` (called from ``build``).

Components are looked up when each service starts, not when it is built, so
the order of assembly factories does not matter (``store`` from storage,
``door`` from the door controller, ``privacy``/``licence``/``keys`` from
their issues). A missing part is logged once and its feature stays off:

* ``mqtt.events`` (:class:`~.durable.DurableEvents`) needs component ``store``
  (a :class:`facegate.storage.Store`); without it events are NOT durable and
  the device says so at start. With ``events.include_names`` it also runs
  :class:`~.names.SubjectNames` over the store's gallery (task ``mqtt.names``);
* ``commands`` (:class:`facegate.handlers.commands.CommandService`) when
  ``commands.enabled``; nonces persist in the store's key-value table;
* ``mqtt.metrics`` (fps, stage latencies for telemetry);
* ``mqtt.homeassistant`` when ``homeassistant.discovery``;
* ``mqtt.door_state``: the retained ``door/state`` topic (lock, door, fire).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import structlog

from ..bus import EventBus
from ..clock import Clock
from ..config import DeviceConfig
from .codec import EventCodec
from .doorstate import DoorStatePublisher
from .durable import DurableEvents
from .homeassistant import HomeAssistantDiscovery
from .link import MqttLink
from .metrics import LinkMetrics
from .names import SubjectNames

if TYPE_CHECKING:
    from .factory import AssemblyContext, AssemblyParts

_log = structlog.get_logger("facegate.mqtt")


class DurableEventsRunner:
    """Service ``mqtt.events``: runs :class:`DurableEvents` on the ``store`` component's outbox."""

    def __init__(
        self,
        link: MqttLink,
        components: Mapping[str, object],
        *,
        bus: EventBus,
        clock: Clock,
        include_names: bool,
        metrics: LinkMetrics,
        redeliver_window_s: float = 5.0,
    ) -> None:
        self._link = link
        self._components = components
        self._bus = bus
        self._clock = clock
        self._include_names = include_names
        self._metrics = metrics
        self._redeliver_window_s = redeliver_window_s
        self.events: DurableEvents | None = None
        self.names: SubjectNames | None = None

    @property
    def name(self) -> str:
        return "mqtt.events"

    async def run(self) -> None:
        store: Any = self._components.get("store")
        outbox = getattr(store, "outbox", None)
        if outbox is None:
            _log.error("mqtt.events_not_durable", reason="no 'store' component: events are not published")
            await asyncio.Event().wait()
            return
        names = self._names(store)
        # Names are never stored: the outbox row carries the subject id only and the
        # drain adds the display name at publish time (issue 10.4, RULES R30).
        codec = EventCodec(self._link.topics.device_id)
        self.events = DurableEvents(
            bus=self._bus,
            outbox=outbox,
            link=self._link,
            codec=codec,
            base_topic=self._link.topics.base,
            clock=self._clock,
            on_access=self._metrics.on_access,
            redeliver_window_s=self._redeliver_window_s,
            names=names,
        )
        self._metrics.backlog = lambda: outbox.backlog
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self.events.run(), name="mqtt.events.pipeline")
            if names is not None:
                tg.create_task(names.run(), name=names.name)

    def _names(self, store: Any) -> SubjectNames | None:
        """The display-name cache over the store's gallery, when ``events.include_names`` is on."""
        if not self._include_names:
            return None
        gallery = getattr(store, "gallery", None)
        if gallery is None:
            _log.warning("mqtt.events.names_unavailable", reason="the store has no gallery")
            return None
        self.names = SubjectNames(gallery, clock=self._clock, bus=self._bus)
        return self.names


class CommandsRunner:
    """Service ``commands``: builds the command service from the components when it starts."""

    def __init__(
        self,
        link: MqttLink,
        components: Mapping[str, object],
        cfg: DeviceConfig,
        *,
        bus: EventBus,
        clock: Clock,
    ) -> None:
        self._link = link
        self._components = components
        self._cfg = cfg
        self._bus = bus
        self._clock = clock
        self.service: Any = None

    @property
    def name(self) -> str:
        return "commands"

    async def run(self) -> None:
        from ...handlers.commands import Tunable, Tunables, build_command_service  # noqa: PLC0415  # handlers load lazily

        tunables = Tunables()
        telemetry = self._link.telemetry
        if telemetry is not None:
            tel = telemetry

            def set_interval(value: Any) -> None:
                tel.interval_s = value

            tunables.register("telemetry_interval_s", Tunable("seconds between telemetry", set_interval))
        store: Any = self._components.get("store")
        signer: Any = None
        if store is not None and hasattr(store, "keys"):
            from ...policy.device_keys import SigningKey  # noqa: PLC0415  # policy loads lazily

            signer = await SigningKey.load(store)  # replies are signed with the device key (issue 10.9)
        self.service = await build_command_service(
            self._cfg.commands,
            self._link,
            components=self._components,
            bus=self._bus,
            clock=self._clock,
            nonce_store=getattr(store, "kv", None),
            tunables=tunables,
            result_store=getattr(store, "command_results", None),
            signer=signer,
        )
        if not self._cfg.commands.operators:
            _log.warning("commands.no_operators", detail="only 'ping' can succeed")
        await self.service.run()


def add_link_services(
    ctx: AssemblyContext, parts: AssemblyParts, link: MqttLink, metrics: LinkMetrics
) -> None:
    """Add ``mqtt.events``, ``mqtt.metrics``, ``commands`` and ``mqtt.homeassistant``."""
    cfg = ctx.loaded.config
    events = DurableEventsRunner(
        link,
        parts.components,
        bus=ctx.bus,
        clock=ctx.clock,
        include_names=cfg.events.include_names,
        metrics=metrics,
        redeliver_window_s=cfg.mqtt.redeliver_window_s,
    )
    parts.services.extend([events, metrics])
    parts.components["mqtt.events"] = events
    door_state = DoorStatePublisher(link, parts.components, bus=ctx.bus, clock=ctx.clock)
    parts.services.append(door_state)
    parts.components["mqtt.door_state"] = door_state
    if cfg.commands.enabled:
        commands = CommandsRunner(link, parts.components, cfg, bus=ctx.bus, clock=ctx.clock)
        parts.services.append(commands)
        parts.components["commands"] = commands
    if cfg.homeassistant.discovery:
        ha_cfg = cfg.homeassistant
        bridge = ha_cfg.lock_bridge
        if ha_cfg.lock and not bridge:
            _log.warning("mqtt.homeassistant.lock_disabled", reason="no lock_bridge: unlock cannot be signed")
        elif ha_cfg.lock and bridge not in cfg.commands.operators:
            _log.warning("mqtt.homeassistant.lock_disabled", reason="lock_bridge is not an operator")
        ha = HomeAssistantDiscovery(
            link,
            clock=ctx.clock,
            prefix=ha_cfg.discovery_prefix,
            lock=ha_cfg.lock and bool(bridge) and bridge in cfg.commands.operators,
        )
        parts.services.append(ha)
        parts.components["mqtt.homeassistant"] = ha
