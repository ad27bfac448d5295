"""``facegate demo [--seconds N]``: the recognition story on a simulated device.

Runs the packaged ``demo.toml`` (= ``firmware-config/demo.toml``; simulated camera and GPIO, embedded amqtt
broker) on a throw-away encrypted store in a temporary folder with a fresh
key, then plays :mod:`._demo_story`: sample faces enrolled from image files
(consent first; a child needs a guardian), a known face granted, an unknown
face refused, a frozen replay refused, a withdrawal, a forced door. Every
outcome is printed as an outside MQTT client subscribed to
``<prefix>/<device id>/#`` receives it. Stops on Ctrl-C or after ``--seconds``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import dataclasses
import json
import os
import secrets
import tempfile
from pathlib import Path
from typing import Any

import aiomqtt

from ....drivers.models import default_cache_dir
from ... import demo as demo_assets
from ...config import ConfigError, LoadedConfig, load_config
from ..device import Device
from ._demo_story import Story
from .run_cmd import serve, setup_logging


def default_config() -> Path:
    """The ``demo.toml`` shipped in the package (``facegate.runtime.demo``)."""
    return demo_assets.config_path()


def register(sub: Any) -> None:
    """Add the ``demo`` command."""
    p = sub.add_parser(
        "demo",
        help="run the recognition story on a simulated device and print what it publishes",
        description="Run firmware-config/demo.toml: a simulated device on the embedded MQTT "
        "broker with a throw-away encrypted store. Enrols sample faces, shows known, unknown "
        "and replayed faces, and prints every event as an MQTT subscriber receives it. "
        "Stops on Ctrl-C or after --seconds.",
    )
    p.add_argument("--seconds", type=_positive, default=None, help="stop after N seconds (default: Ctrl-C)")
    p.add_argument(
        "-c", "--config", type=Path, default=None, help="demo config (default: the packaged demo.toml)"
    )
    p.add_argument("--no-story", action="store_true", help="only run the device; show no faces")
    p.add_argument(
        "--port", type=_port, default=None, help="MQTT port of the demo broker (default: the config's)"
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


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError("must be 1..65535")
    return value


def _say(text: str) -> None:
    print(text, flush=True)


def _throwaway_store(loaded: LoadedConfig, workdir: Path) -> LoadedConfig:
    """The demo config with its store in ``workdir`` and a fresh KEK in the environment.

    The demo never touches a real device's data: each run starts empty and the
    key dies with the process.
    """
    cfg = loaded.config
    storage = cfg.storage
    if storage.enabled:
        if storage.kek_source != "env":
            raise ConfigError(loaded.path, "storage.kek_source", "the demo expects 'env' (a throw-away key)")
        os.environ[storage.kek_env] = base64.b64encode(secrets.token_bytes(32)).decode()
        storage = dataclasses.replace(storage, path=workdir / "demo.db", vault_path=workdir / "demo.keys.db")
    recognition = cfg.recognition
    if recognition.models.cache_dir is None:
        # Never beside the config file: the packaged demo.toml sits in site-packages.
        models = dataclasses.replace(recognition.models, cache_dir=default_cache_dir())
        recognition = dataclasses.replace(recognition, models=models)
    config = dataclasses.replace(cfg, storage=storage, recognition=recognition)
    return dataclasses.replace(loaded, config=config)


def _demo(args: argparse.Namespace) -> int:
    path = args.config or default_config()
    loaded = load_config(path)
    if args.port is not None:
        mqtt = dataclasses.replace(loaded.config.mqtt, port=args.port)
        loaded = dataclasses.replace(loaded, config=dataclasses.replace(loaded.config, mqtt=mqtt))
    setup_logging(loaded)
    cfg = loaded.config
    _say(
        f"facegate demo: device {cfg.device.id!r}, broker {cfg.mqtt.broker} at "
        f"{cfg.mqtt.host}:{cfg.mqtt.port}. Ctrl-C stops."
    )
    _say(f"  watch it yourself: mosquitto_sub -h {cfg.mqtt.host} -p {cfg.mqtt.port} -t 'facegate/#' -v")
    with tempfile.TemporaryDirectory(prefix="facegate-demo-") as tmp:
        demo = _throwaway_store(loaded, Path(tmp))
        if demo.config.storage.enabled:
            from ....policy.licence.demo import issue_demo_licence  # noqa: PLC0415  # policy loads on use

            demo = asyncio.run(issue_demo_licence(demo, Path(tmp)))
            _say("[demo] a demo vendor key issued this device a licence on the fly (state on 'licence')")

        async def narrate(device: Device) -> None:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(_print_mqtt(device), name="demo.mqtt")
                if not args.no_story:
                    tg.create_task(_play(device), name="demo.story")

        code = asyncio.run(serve(demo, seconds=args.seconds, body=narrate))
    _say(f"facegate demo: stopped (exit {code})")
    return code


async def _play(device: Device) -> None:
    await device.started.wait()
    await Story(device, _say).play()


async def _print_mqtt(device: Device) -> None:
    """Print what the device publishes, through a separate MQTT client."""
    cfg = device.config
    if device.parts.mqtt is None:
        _say("[demo] no MQTT link in this build: nothing is published")
        return
    base = f"{cfg.mqtt.topic_prefix}/{cfg.device.id}/"
    with contextlib.suppress(aiomqtt.MqttError):
        async with aiomqtt.Client(
            cfg.mqtt.host,
            cfg.mqtt.port,
            identifier=f"facegate-demo-viewer-{cfg.device.id}",
            protocol=aiomqtt.ProtocolVersion.V311,
        ) as client:
            await client.subscribe(base + "#", qos=1)
            async for message in client.messages:
                suffix = str(message.topic).removeprefix(base)
                retained = " (retained)" if message.retain else ""
                _say(f"[mqtt] {suffix}{retained}: {describe(suffix, message.payload)}")
    # The broker closing at shutdown ends the subscription: that is the normal end.


def describe(suffix: str, payload: Any) -> str:
    """One readable line for a published message (the payload's own fields only)."""
    raw = payload.decode("utf-8", "replace") if isinstance(payload, bytes | bytearray) else str(payload)
    try:
        body = json.loads(raw)
    except ValueError:
        return raw[:200]
    if not isinstance(body, dict):
        return raw[:200]
    if suffix == "event/access":
        return _describe_access(body)
    if suffix == "telemetry":
        keys = ("uptime_s", "fps", "outbox_backlog", "gallery_size", "frames_dropped")
        return " ".join(f"{k}={_num(body.get(k))}" for k in keys if k in body)
    if suffix in ("event/door", "event/security", "event/privacy"):
        fields = ("kind", "subject_id", "cause", "detail", "counts", "receipt_id")
        return " ".join(f"{k}={body[k]}" for k in fields if body.get(k) not in (None, "", {}))
    if suffix == "licence":
        from ....policy.licence.demo import describe_licence  # noqa: PLC0415  # policy loads on use

        return describe_licence(body)
    if suffix == "status":
        if "version" not in body:
            return str(body.get("state"))
        return f"{body.get('state')} (version {body.get('version')}, config {body.get('config_digest')})"
    text = json.dumps(body, separators=(",", ":"))
    return text if len(text) <= 300 else text[:300] + "..."


def _num(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _describe_access(body: dict[str, Any]) -> str:
    failed = [
        f"{s.get('name')}:{s.get('reason')}"
        for s in [*body.get("quality", []), *body.get("liveness", [])]
        if isinstance(s, dict) and not s.get("passed")
    ]
    parts = [
        str(body.get("decision", "?")).upper(),
        f"reason={body.get('reason')}",
        f"subject={body.get('subject_id') or '-'}",
        f"score={_num(body.get('score'))}",
        f"runner_up={_num(body.get('runner_up'))}",
        f"margin={_num(body.get('margin'))}",
        f"threshold={_num(body.get('threshold'))}",
        f"frames={body.get('frame_count')}",
        f"gallery={body.get('gallery_size')}",
        f"model={body.get('model_id')}",
    ]
    if failed:
        parts.append("failed=" + ",".join(failed))
    total = (body.get("latency_ms") or {}).get("total")
    if total is not None:
        parts.append(f"latency_ms={_num(total)}")
    return " ".join(parts)
