"""``SimDevice``: a whole facegate device for tests, on a real broker, without hardware.

A real :class:`~facegate.runtime.app.device.Device` with its real parts: the
encrypted SQLite store (temporary folder, fresh KEK), the real models and
recognition pipeline, consent policy, door control, signed commands and the
durable MQTT link. Only the lowest seams are simulated: the camera
(:class:`SimulatedCamera`) and the GPIO lines (:class:`SimulatedGpio`), and
the clock is a :class:`SimClock` a test can advance.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from ..drivers.camera import SimulatedCamera
from ..drivers.gpio import SimulatedGpio
from ..drivers.images import decode_image
from ..drivers.models import default_cache_dir
from ..policy import AgeBand, ConsentKind, ConsentMethod, Policy, enrol_images
from ..policy.licence.demo import issue_demo_licence
from ..runtime.app.device import Device
from ..runtime.config import load_config
from ..storage.crypto import new_key
from ..storage.kek import write_key_file
from . import parts as internals
from .broker import BrokerInfo
from .clock import SimClock
from .command import CommandClient
from .parts import Door, Relay

ImageLike = Path | str | bytes
OPERATOR = "test-operator"


@dataclass(frozen=True)
class SimOptions:
    """How a simulated device is built. Every field has a working default."""

    device_id: str = "gate-1"
    site: str = "sim"
    topic_prefix: str = "facegate/v1"
    fps: float = 15.0
    unlock_s: float = 1.0
    recognition: bool = True
    licence: bool = True
    """Install a valid test licence (a throw-away vendor key signs it; ``app`` binding)."""
    mqtt_hosts: tuple[str, ...] = ()
    """Several broker endpoints ``HOST:PORT`` (``mqtt.hosts``: failover); empty: the test broker only."""
    telemetry_interval_s: float = 60.0
    mqtt_connect_timeout_s: float = 5.0
    """``mqtt.connect_timeout_s``: bound of one connection attempt until CONNACK."""
    model_cache: Path | None = None
    """Converted-model cache (default: the user cache, shared between runs)."""
    extra_config: str = ""
    """TOML appended to the generated config (extra sections, e.g. a licence)."""
    files: Mapping[str, bytes] = field(default_factory=dict)
    """Files written into the device folder before the config loads (e.g. a licence file
    that ``extra_config`` points at)."""


def _config(opts: SimOptions, broker: BrokerInfo, folder: Path, operator_pub: str) -> str:
    cache = opts.model_cache or default_cache_dir()
    hosts = "hosts = [" + ", ".join(f'"{h}"' for h in opts.mqtt_hosts) + "]\n" if opts.mqtt_hosts else ""
    recognition = (
        f'[recognition]\nenabled = true\n\n[recognition.models]\ncache_dir = "{cache}"\n'
        if opts.recognition else "[recognition]\nenabled = false\n"
    )
    return f"""
[device]
id = "{opts.device_id}"
site = "{opts.site}"

[mqtt]
broker = "external"
host = "{broker.host}"
port = {broker.port}
protocol = "{broker.protocol}"
topic_prefix = "{opts.topic_prefix}"
keepalive = 5
reconnect_min_s = 0.05
reconnect_max_s = 0.5
telemetry_interval_s = {opts.telemetry_interval_s}
connect_timeout_s = {opts.mqtt_connect_timeout_s}
{hosts}
[lifecycle]
watchdog = false
shutdown_grace_s = 5.0

[logging]
level = "warning"

[camera]
driver = "simulated"
fps = {opts.fps}

[gpio]
driver = "simulated"
relay_line = 17
lock_type = "fail_secure"
unlock_s = {opts.unlock_s}
door_sensor_line = 27
exit_button_line = 22

[storage]
path = "{folder / "device.db"}"
kek_source = "file"
kek_file = "{folder / "facegate.kek"}"

{recognition}
[commands]
operators = {{ {OPERATOR} = "{operator_pub}" }}
window_s = 60.0
max_payload_bytes = 4000000
{opts.extra_config}
"""


class SimDevice:
    """A running simulated device; use as ``async with SimDevice(broker, folder) as dev``.

    Typed handles: :attr:`device`, :attr:`camera`, :attr:`gpio`, :attr:`policy`,
    :attr:`clock`, :attr:`relay`, :attr:`door`, :attr:`operator_key`.
    """

    def __init__(self, broker: BrokerInfo, folder: Path, options: SimOptions | None = None) -> None:
        self.broker = broker
        self.folder = folder
        self.options = options or SimOptions()
        self.operator_key = Ed25519PrivateKey.generate()
        self.clock = SimClock()
        self._stack = contextlib.AsyncExitStack()
        self._device: Device | None = None
        self._commands: CommandClient | None = None

    @property
    def id(self) -> str:
        return self.options.device_id

    @property
    def device(self) -> Device:
        if self._device is None:
            raise RuntimeError("the simulated device is not running")
        return self._device

    async def __aenter__(self) -> SimDevice:
        opts = self.options
        self.folder.mkdir(parents=True, exist_ok=True)
        for name, data in opts.files.items():
            (self.folder / name).write_bytes(data)
        pub = self.operator_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        path = self.folder / "device.toml"
        path.write_text(_config(opts, self.broker, self.folder, base64.b64encode(pub).decode()))
        loaded = await asyncio.to_thread(load_config, path)
        kek = self.folder / "facegate.kek"
        if not kek.exists():  # a fresh random key-encryption key, 0600, for this device's store
            await asyncio.to_thread(write_key_file, kek, new_key())
        if opts.licence:
            loaded = await issue_demo_licence(loaded, self.folder)
        device = Device(loaded, clock=self.clock, handle_signals=False)
        try:
            self._device = await self._stack.enter_async_context(_running(device))
            await self._wait_ready()
        except BaseException:
            await self._stack.aclose()
            raise
        gpio = self.gpio
        g = loaded.config.gpio
        self.relay = Relay(gpio, g.relay_line, gpio.level(g.relay_line))
        self.door = Door(gpio, g.door_sensor_line, g.door_open_high)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()
        self._device = None
        self._commands = None

    async def _wait_ready(self) -> None:
        async with asyncio.timeout(300):  # the first run converts the models
            await self.device.started.wait()
            await internals.wait_ready(self.device)

    # ---- typed handles ------------------------------------------------------------------

    @property
    def camera(self) -> SimulatedCamera:
        return internals.camera(self.device)

    @property
    def gpio(self) -> SimulatedGpio:
        return internals.gpio(self.device)

    @property
    def policy(self) -> Policy:
        return internals.policy(self.device)

    # ---- helpers ---------------------------------------------------------------------------

    async def enroll(
        self,
        subject: str,
        images: ImageLike | Sequence[ImageLike],
        *,
        consent: bool = True,
        age: AgeBand | date | None = AgeBand.ADULT,
    ) -> int:
        """Record ``age``, grant active biometric consent (unless ``consent=False``) and enrol.

        Returns the number of templates added. Raises the policy's error (for example
        :class:`~facegate.policy.errors.ConsentRequiredError`) when enrolment is refused.
        """
        policy = self.policy
        if isinstance(age, date):
            await policy.record_age(subject, actor="test", birth_date=age)
        elif age is not None:
            await policy.record_age(subject, actor="test", age_band=age)
        if consent:
            digest = "sha256:" + hashlib.sha256(f"test consent form:{subject}".encode()).hexdigest()
            await policy.consents.grant(
                subject_id=subject, kind=ConsentKind.BIOMETRIC, method=ConsentMethod.KIOSK,
                evidence_digest=digest, actor="test", activate=True,
            )
        items = [images] if isinstance(images, Path | str | bytes) else list(images)
        data = [await asyncio.to_thread(_read, item) for item in items]
        embed = await internals.embedder(self.device)
        result = await enrol_images(policy, subject, data, embed, actor="test")
        return len(result.template_ids)

    async def show_face(self, image: ImageLike | np.ndarray[Any, Any], *, frames: int = 30,
                        jitter: bool = True) -> None:
        """Show an image to the camera for ``frames`` frames (2 s at 15 fps); return when shown."""
        what: Any = image
        if isinstance(image, bytes):
            what = await asyncio.to_thread(decode_image, image)
        await self.camera.show(what, frames=frames, jitter=jitter)

    async def clear_view(self, *, frames: int = 15) -> None:
        """Show an empty grey scene, so the current track ends."""
        section = self.device.config.camera
        blank = np.full((section.height, section.width, 3), 128, dtype=np.uint8)
        await self.camera.show(blank, frames=frames, jitter=False)

    async def command(self, verb: str, timeout: float = 60.0, **args: Any) -> dict[str, Any]:
        """Send ``verb`` signed by the test operator key over MQTT; return the parsed reply."""
        if self._device is None:
            raise RuntimeError("the simulated device is not running")
        if self._commands is None:  # connected on first use: a fleet of devices needs none
            opts = self.options
            self._commands = await self._stack.enter_async_context(
                CommandClient(self.broker, opts.topic_prefix, opts.device_id, key=self.operator_key,
                              operator=OPERATOR, clock=self.clock)
            )
        return await self._commands.call(verb, args, timeout=timeout)


@contextlib.asynccontextmanager
async def _running(device: Device) -> Any:
    async with device as dev:
        try:
            yield dev
        finally:
            dev.request_shutdown("simulation over")


def _read(item: ImageLike) -> bytes:
    return item if isinstance(item, bytes) else Path(item).read_bytes()


__all__ = ["OPERATOR", "SimDevice", "SimOptions"]
