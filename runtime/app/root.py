"""The composition root: one device, opened and built in two typed phases.

Phase 1, :func:`open_resources`, opens the resources in order and returns the
real, opened objects (:class:`Resources`): the GPIO driver (first of all: the
outputs are in their safe state before anything else opens, and are released
last), the store, the recognition engine (models verified, gallery loaded into the matcher), the
privacy policy, the embedded broker. Each one is entered on the caller's
``AsyncExitStack``, so a failure at any step closes what was opened before,
in reverse order, and the device refuses to start naming what failed.

Phase 2, :func:`build_parts`, builds every service from those objects as
constructor arguments and returns :class:`Parts`, a frozen dataclass of typed
fields. The Device supervises ``Parts.services`` in order, enters the safe
state of ``Parts.safe_outputs`` on every shutdown path and reads nothing by
name. Adding a service or a verb is "add a field, pass it in": mypy checks the
wiring, and a part that a config asks for but cannot be built is a start-up
error, never a silent feature switch.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass

import structlog

from ...drivers.camera import OpenCVCamera, SimulatedCamera, create_camera
from ...drivers.gpio import GpioDriver, GpioInputWatcher, build_driver, input_lines
from ...handlers.access import AntiPassback, Authoriser, PeerPassages, store_lookup
from ...handlers.access.journal import PassageJournal
from ...handlers.access.remote import RemoteOpen
from ...handlers.commands import VerbParts
from ...handlers.door import DoorController
from ...handlers.recognition.engine import RecognitionEngine
from ...handlers.recognition.gallery_load import GalleryLoader
from ...handlers.recognition.matcher import Matcher
from ...handlers.recognition.service import RecognitionService
from ...policy import Policy
from ...policy.actions import PrivacyActions
from ...policy.device_keys import rewrap_secrets
from ...policy.licence.enrolment import EnrolmentGate
from ...policy.licence.manager import LicenceManager
from ...policy.services import snapshot_sink
from ...storage import Store
from ...storage.live_rotation import LiveKeyRotation
from ..bus import EventBus
from ..clock import Clock
from ..config import DeviceConfig, LoadedConfig
from ..config.privacy import PrivacySection
from ..health import HealthMonitor
from ..mqtt import EmbeddedBroker
from ..service import SafeOutput, Service
from .mqtt_parts import LinkParts, build_link_parts, new_link
from .policy_parts import incident_services, licence_services, policy_services, remote_destroy
from .watchdog import SdNotifier, Watchdog

_log = structlog.get_logger("facegate.root")


@dataclass(frozen=True)
class Context:
    """What both phases may use: the config and the device's shared floor parts."""

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


@dataclass(frozen=True)
class Resources:
    """Phase 1: the opened resources, in the order they were opened."""

    gpio: GpioDriver
    store: Store | None
    licence: LicenceManager | None
    """Evaluated before recognition loads any template (``[licence] enabled``)."""
    engine: RecognitionEngine | None
    gallery: GalleryLoader | None
    policy: Policy | None
    broker: EmbeddedBroker | None
    passback: AntiPassback | None = None
    """Anti-passback state, restored from its journal when the device has a store."""
    journal: PassageJournal | None = None


@dataclass(frozen=True, kw_only=True)
class Parts:
    """Phase 2: every part of one device, typed. Tests and the CLI read these attributes."""

    gpio: GpioDriver
    door: DoorController
    store: Store | None = None
    licence: LicenceManager | None = None
    keys: LiveKeyRotation | None = None
    camera: OpenCVCamera | SimulatedCamera | None = None
    engine: RecognitionEngine | None = None
    gallery: GalleryLoader | None = None
    """The stored gallery's load into the matcher (deferred without a usable licence)."""
    recognition: RecognitionService | None = None
    passback: AntiPassback | None = None
    """Anti-passback state shared with the peer follower (``access.anti_passback``)."""
    policy: Policy | None = None
    privacy: PrivacyActions | None = None
    broker: EmbeddedBroker | None = None
    mqtt: LinkParts | None = None
    """The MQTT link and its services (events, names, metrics, commands, discovery)."""
    watchdog: Watchdog | None = None
    services: tuple[Service, ...] = ()
    """Supervised in this order (after every resource opened)."""
    safe_outputs: tuple[SafeOutput, ...] = ()
    on_stopping: tuple[Callable[[], None], ...] = ()


# -- phase 1: resources ------------------------------------------------------------------------


async def open_gpio(ctx: Context, stack: AsyncExitStack) -> GpioDriver:
    """The GPIO driver, opened (its lines released at their safe level when the stack closes)."""
    return await stack.enter_async_context(build_driver(ctx.config.gpio, ctx.clock))


async def open_engine(
    ctx: Context,
    store: Store | None,
    stack: AsyncExitStack,
    *,
    gate: Callable[[], bool] | None = None,
) -> tuple[RecognitionEngine, GalleryLoader | None]:
    """The recognition engine (models verified and opened off the loop), its matcher filled.

    A model with the wrong hash stops the device here, before it serves anyone.
    The store's decrypted gallery is loaded into the matcher, and the gallery
    becomes the matcher's single writer until the stack closes. Without a usable
    licence (``gate``) no template is read: the returned loader then loads later.
    """
    engine = await RecognitionEngine.create(
        ctx.config.recognition, bus=ctx.bus, clock=ctx.clock, config_path=ctx.loaded.path
    )
    if store is None:
        return engine, None
    loader = GalleryLoader(engine, store, clock=ctx.clock, gate=gate)
    stack.callback(store.gallery.attach, None)
    if loader.allowed:
        await loader.load()
    else:
        _log.warning("recognition.gallery_deferred", reason="no usable licence: no template is read")
    return engine, loader


async def open_policy(
    store: Store,
    privacy: PrivacySection,
    *,
    clock: Clock,
    matcher: Matcher | None,
    device_id: str,
    stack: AsyncExitStack,
) -> Policy:
    """The privacy policy over the open store; subjects no longer permitted leave the matcher."""
    policy = await Policy(store, privacy, clock=clock, sink=matcher, device_id=device_id).open()
    stack.callback(policy.attach, None)
    return policy


def camera_count(cfg: DeviceConfig) -> int:
    """Cameras this device runs (colour, plus IR when configured): the licence counts them."""
    return 1 + (cfg.camera.ir is not None)


async def open_resources(ctx: Context, stack: AsyncExitStack) -> Resources:
    """Phase 1: GPIO, store, engine, policy, broker, each entered on ``stack`` in this order."""
    cfg = ctx.config
    # First resource of all: the outputs reach their safe state before anything else
    # (storage, camera, broker) is opened, and are released last.
    gpio = await open_gpio(ctx, stack)
    store: Store | None = None
    if cfg.storage.enabled:
        store = await stack.enter_async_context(
            Store.from_config(cfg.storage, clock=ctx.clock, publish=ctx.bus.publish, repair=ctx.repair)
        )
    licence: LicenceManager | None = None
    if cfg.licence.enabled and store is not None:
        licence = await stack.enter_async_context(
            LicenceManager(cfg.licence, store=store, bus=ctx.bus, clock=ctx.clock, cameras=camera_count(cfg))
        )
    engine: RecognitionEngine | None = None
    gallery: GalleryLoader | None = None
    if cfg.recognition.enabled:
        gate = licence.recognition_allowed if licence is not None else None
        engine, gallery = await open_engine(ctx, store, stack, gate=gate)
    policy: Policy | None = None
    if store is not None:
        policy = await open_policy(
            store,
            cfg.privacy,
            clock=ctx.clock,
            matcher=engine.matcher if engine is not None else None,
            device_id=cfg.device.id,
            stack=stack,
        )
    broker: EmbeddedBroker | None = None
    if cfg.mqtt.broker == "embedded":
        # A resource, so it opens before and closes after every service: the link's
        # clean ``offline`` still reaches it at shutdown.
        broker = await stack.enter_async_context(EmbeddedBroker(cfg.mqtt.host, cfg.mqtt.port))
    passback = anti_passback(ctx)
    journal: PassageJournal | None = None
    if passback is not None and store is not None:  # the state survives a restart
        journal = PassageJournal(passback, store, ctx.clock)
        passback.journal = journal
        await stack.enter_async_context(journal)
    return Resources(
        gpio=gpio, store=store, licence=licence, engine=engine, gallery=gallery, policy=policy,
        broker=broker, passback=passback, journal=journal,
    )


# -- phase 2: services ---------------------------------------------------------------------------


def door_services(ctx: Context, gpio: GpioDriver) -> tuple[DoorController, list[Service]]:
    """The door controller and its services (the input watcher when an input line is set)."""
    section = ctx.config.gpio
    services: list[Service] = []
    if input_lines(section):
        services.append(
            GpioInputWatcher(
                gpio,
                ctx.bus,
                ctx.clock,
                min_pulse_s=section.input_min_pulse_ms / 1000,
                immediate=[i.input_line for i in gpio.interlocks],
            )
        )
    door = DoorController(section, gpio, ctx.bus, ctx.clock)
    services.append(door)
    ctx.health.register("door", door.health)
    return door, services


def anti_passback(ctx: Context) -> AntiPassback | None:
    """The anti-passback state when ``access.enabled`` and ``access.anti_passback`` is on."""
    access = ctx.config.access
    if not access.enabled or access.anti_passback == "off":
        return None
    return AntiPassback(access.anti_passback, access.anti_passback_timeout_s, ctx.clock)


def authoriser(ctx: Context, store: Store | None, passback: AntiPassback | None) -> Authoriser | None:
    """Validity dates and schedules (``handlers/access``) after identification, when enabled."""
    section = ctx.config.access
    if not section.enabled or store is None:
        return None
    return Authoriser(section, store_lookup(store), passback=passback, bus=ctx.bus)


def watchdog(ctx: Context) -> Watchdog | None:
    """sd_notify READY/WATCHDOG/STOPPING when systemd asked for it."""
    if not ctx.config.lifecycle.watchdog:
        return None
    notifier = SdNotifier(ctx.environ)
    if not notifier.enabled:
        return None
    return Watchdog(notifier, ctx.clock, ctx.started)


def _loaded(gallery: GalleryLoader | None) -> asyncio.Event | None:
    return None if gallery is None else gallery.loaded


async def build_parts(ctx: Context, res: Resources) -> Parts:
    """Phase 2: every service, built from the opened resources."""
    cfg = ctx.config
    services: list[Service] = []
    dog = watchdog(ctx)
    if dog is not None:
        services.append(dog)
    door, door_svcs = door_services(ctx, res.gpio)
    services.extend(door_svcs)
    camera = create_camera(cfg.camera, ctx.bus, ctx.clock)
    services.append(camera)
    ctx.health.register("camera", camera.health)
    recognition: RecognitionService | None = None
    passback = res.passback
    auth = authoriser(ctx, res.store, passback)
    lic = res.licence
    if res.engine is not None:
        # The policy alone decides that face crops are kept: only then does recognition
        # get a sink, and every crop is sealed and kept at most snapshot_hours.
        sink = None
        if cfg.privacy.decision_snapshots and res.policy is not None:
            sink = snapshot_sink(res.policy)
        recognition = RecognitionService(
            res.engine,
            ctx.bus,
            ctx.clock,
            snapshot_sink=sink,
            authorise=None if auth is None else auth.authorise,
            gate=lic.recognition_allowed if lic is not None else None,
        )
        services.append(recognition)
        ctx.health.register("recognition", recognition.health)
        if res.gallery is not None and not res.gallery.loaded.is_set():
            services.append(res.gallery)  # loads once a licence allows it
    keys: LiveKeyRotation | None = None
    privacy: PrivacyActions | None = None
    if res.store is not None and res.policy is not None:
        # The policy's device secrets are KEK-wrapped too: a live rotation re-wraps them
        # in its final transaction, or it would strand the export signing key.
        keys = LiveKeyRotation(cfg.storage, publish=ctx.bus.publish, extra=(rewrap_secrets,))
        privacy = PrivacyActions(
            res.policy,
            res.engine.embed_image if res.engine is not None else None,
            licence=None if lic is None else EnrolmentGate(lic, _loaded(res.gallery), clock=ctx.clock),
            image_files=res.engine,  # photo enrolment records the image digest (idempotent)
        )
        services.extend(policy_services(res.policy, clock=ctx.clock, bus=ctx.bus))
        services.extend(
            incident_services(cfg, res.policy, bus=ctx.bus, clock=ctx.clock, door=door, gpio=res.gpio)
        )
    remote_open = RemoteOpen(
        door, ctx.bus, ctx.clock, authoriser=auth, store=res.store
    )
    ctx.health.register("access.remote_open", remote_open.health)
    if res.journal is not None:
        services.append(res.journal)
    link, metrics = new_link(ctx.loaded, clock=ctx.clock, bus=ctx.bus, health=ctx.health, store=res.store)
    mqtt = await build_link_parts(
        ctx.loaded,
        link,
        metrics,
        clock=ctx.clock,
        bus=ctx.bus,
        store=res.store,
        door_health=door.health,
        parts=VerbParts(
            door=door,
            privacy=privacy,
            keys=keys,
            licence=lic,
            rights=privacy,
            remote_open=remote_open,
            destroy=None if res.policy is None else remote_destroy(cfg, res.policy, link),
        ),
    )
    if lic is not None:
        services.extend(licence_services(lic, mqtt.link, clock=ctx.clock))
    if passback is not None:
        services.append(PeerPassages(passback, cfg.access.peers, mqtt.link))
    services.extend(mqtt.services)
    return Parts(
        gpio=res.gpio,
        door=door,
        store=res.store,
        licence=lic,
        keys=keys,
        camera=camera,
        engine=res.engine,
        gallery=res.gallery,
        recognition=recognition,
        passback=passback,
        policy=res.policy,
        privacy=privacy,
        broker=res.broker,
        mqtt=mqtt,
        watchdog=dog,
        services=tuple(services),
        safe_outputs=(door,),
        on_stopping=(dog.stopping,) if dog is not None else (),
    )


async def build(ctx: Context, stack: AsyncExitStack) -> Parts:
    """Both phases: what :class:`~facegate.runtime.app.device.Device` runs by default."""
    return await build_parts(ctx, await open_resources(ctx, stack))
