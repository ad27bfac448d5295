"""``facegate demo [--seconds N]``: a simulated device on the embedded broker, narrated.

Runs ``firmware-config/demo.toml`` (simulated GPIO, embedded amqtt broker)
and prints, on stdout, every MQTT message the device publishes, as seen by a
separate MQTT client subscribed to ``<prefix>/<device id>/#``, plus the door
events on the device's bus. A simulated visitor is granted every few seconds
so the relay and the door contact move. Stops on Ctrl-C or after ``--seconds``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
from pathlib import Path
from typing import Any

import aiomqtt

from ...drivers.gpio import SimulatedGpio
from ..config import ConfigError, load_config
from ..device import Device
from ..events import AccessDecision, Decision, DoorEvent, SecurityEvent
from .run_cmd import serve, setup_logging

_VISIT_EVERY_S = 6.0


def default_config() -> Path | None:
    """``firmware-config/demo.toml`` of the source tree (or of the working directory)."""
    candidates = [
        Path(__file__).resolve().parents[2] / "firmware-config" / "demo.toml",
        Path.cwd() / "firmware-config" / "demo.toml",
    ]
    return next((p for p in candidates if p.is_file()), None)


def register(sub: Any) -> None:
    """Add the ``demo`` command."""
    p = sub.add_parser(
        "demo",
        help="run a simulated device on the embedded broker and print what it publishes",
        description="Run firmware-config/demo.toml: a simulated device on the embedded MQTT "
        "broker. Prints every message it publishes. Stops on Ctrl-C or after --seconds.",
    )
    p.add_argument(
        "--seconds", type=_positive, default=None, help="stop after N seconds (default: Ctrl-C)"
    )
    p.add_argument(
        "-c", "--config", type=Path, default=None, help="demo config (default: firmware-config/demo.toml)"
    )
    p.set_defaults(handler=_demo)


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError("must be > 0")
    return value


def _say(text: str) -> None:
    print(text, flush=True)


def _demo(args: argparse.Namespace) -> int:
    path = args.config or default_config()
    if path is None:
        raise ConfigError("firmware-config/demo.toml", "", "not found; pass --config FILE")
    loaded = load_config(path)
    setup_logging(loaded)
    cfg = loaded.config
    _say(
        f"facegate demo: device {cfg.device.id!r}, broker {cfg.mqtt.broker} at "
        f"{cfg.mqtt.host}:{cfg.mqtt.port}. Ctrl-C stops."
    )
    _say(f"  watch it yourself: mosquitto_sub -h {cfg.mqtt.host} -p {cfg.mqtt.port} -t 'facegate/#' -v")
    code = asyncio.run(serve(loaded, seconds=args.seconds, body=_narrate))
    _say(f"facegate demo: stopped (exit {code})")
    return code


async def _narrate(device: Device) -> None:
    async with asyncio.TaskGroup() as tg:
        tg.create_task(_print_mqtt(device), name="demo.mqtt")
        tg.create_task(_print_bus(device), name="demo.bus")
        tg.create_task(_visitors(device), name="demo.visitors")


async def _print_mqtt(device: Device) -> None:
    """Print what the device publishes, through a separate MQTT client."""
    cfg = device.config
    if "mqtt" not in device.parts.components:
        _say("[demo] no MQTT link in this build: nothing is published")
        return
    topic = f"{cfg.mqtt.topic_prefix}/{cfg.device.id}/#"
    with contextlib.suppress(aiomqtt.MqttError):
        async with aiomqtt.Client(
            cfg.mqtt.host,
            cfg.mqtt.port,
            identifier=f"facegate-demo-viewer-{cfg.device.id}",
            protocol=aiomqtt.ProtocolVersion.V311,
        ) as client:
            await client.subscribe(topic, qos=1)
            async for message in client.messages:
                retained = " (retained)" if message.retain else ""
                _say(f"[mqtt] {message.topic}{retained} {_short(message.payload)}")
    # The broker closing at shutdown ends the subscription: that is the normal end.


def _short(payload: Any, limit: int = 400) -> str:
    text = payload.decode("utf-8", "replace") if isinstance(payload, bytes | bytearray) else str(payload)
    with contextlib.suppress(ValueError):
        text = json.dumps(json.loads(text), separators=(",", ":"))
    return text if len(text) <= limit else text[:limit] + "..."


async def _print_bus(device: Device) -> None:
    async with device.bus.subscribe(DoorEvent, SecurityEvent, name="demo", maxsize=64) as sub:
        async for ev in sub:
            if isinstance(ev, DoorEvent):
                _say(f"[door] {ev.kind.value} ({ev.cause})")
            elif isinstance(ev, SecurityEvent):
                _say(f"[security] {ev.kind.value}: {ev.detail}")


async def _visitors(device: Device) -> None:
    """A simulated visitor: a grant, the door opens, the door closes; repeat."""
    gpio = device.parts.components.get("gpio")
    sensor = device.config.gpio.door_sensor_line
    n = 0
    while True:
        await device.clock.sleep(_VISIT_EVERY_S)
        n += 1
        _say(f"[demo] simulated visitor {n} recognised (grant)")
        device.bus.publish(
            AccessDecision(
                at=device.clock.wall(),
                event_id=f"demo-{n}",
                decision=Decision.GRANTED,
                reason="demo",
                subject_id=None,
                score=None,
                runner_up=None,
                margin=None,
                threshold=0.0,
            )
        )
        if isinstance(gpio, SimulatedGpio) and sensor is not None:
            await device.clock.sleep(0.5)
            gpio.drive_input(sensor, device.config.gpio.door_open_high)
            await device.clock.sleep(1.0)
            gpio.drive_input(sensor, not device.config.gpio.door_open_high)
