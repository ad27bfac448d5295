"""Command-flood benchmark: ``python -m facegate.handlers.commands.flood_bench [--rate R] [--seconds S]``.

Starts a throw-away Mosquitto (``/usr/sbin/mosquitto``) on a free loopback port,
the device's MQTT link, door controller (simulated GPIO) and command service,
then floods ``cmd/open`` and ``cmd/lockdown`` with hostile payloads (980-deep
args, forged signatures, unparseable JSON, 1 MB padding) at ``--rate`` messages/s
from an attacker client while an operator sends a valid signed ``lockdown``
every second (each followed by a ``release``). Prints, per flood rate, the time
from publishing the lockdown to the door being in lockdown (p50 / max) and to
its reply, plus the worker's counts (the worker must never die). Issue 10.3.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiomqtt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from ...drivers.gpio import SimulatedGpio, build_driver
from ...runtime.bus import EventBus
from ...runtime.clock import SystemClock
from ...runtime.config import load_config
from ...runtime.config.gpio import GpioSection
from ...runtime.config.link import CommandsSection
from ...runtime.machine import cpu_model
from ...runtime.mqtt import MqttLink
from ..door import DoorController
from . import VerbParts, build_command_service, envelope

BASE = "facegate/v1/gate-1"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])

def _hostile(key: Ed25519PrivateKey) -> list[tuple[str, bytes]]:
    now = int(time.time() * 1000)
    deep = envelope.build("open", {}, device_id="gate-1", ts_ms=now)
    deep.update(operator="alice", sig="A" * 86 + "==")
    text = envelope.encode(deep).decode().replace('"args":{}', '"args":{"x":' + "[" * 980 + "]" * 980 + "}")
    forged = envelope.build("lockdown", {}, device_id="gate-1", ts_ms=now, operator="alice", key=key)
    return [
        ("open", text.encode()),
        ("lockdown", envelope.encode(forged)),
        ("open", b"{" * 5000),
        ("open", b'{"verb":"open","pad":"' + b"A" * 20_000 + b'"}'),
    ]


async def _run(port: int, rate: float, seconds: float) -> dict[str, object]:  # noqa: PLR0915  # one linear benchmark script
    alice = Ed25519PrivateKey.generate()
    pub = base64.b64encode(alice.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "device.toml"
        cfg.write_text(
            f'[device]\nid = "gate-1"\n[mqtt]\nbroker = "external"\nport = {port}\n'
            "reconnect_min_s = 0.05\nreconnect_max_s = 0.2\n"
        )
        clock, bus = SystemClock(), EventBus()
        link = MqttLink.from_config(load_config(cfg), clock=clock, bus=bus)
        gpio = build_driver(GpioSection(), clock)
        assert isinstance(gpio, SimulatedGpio)
        async with gpio, link, asyncio.TaskGroup() as tg:
            door = DoorController(GpioSection(), gpio, bus, clock)
            svc = await build_command_service(
                CommandsSection(operators={"alice": pub}, window_s=60.0, max_payload_bytes=2_000_000),
                link,
                parts=VerbParts(door=door),
                bus=bus,
                clock=clock,
            )
            tasks = [
                tg.create_task(door.run(), name="bench.door"),
                tg.create_task(svc.run(), name="bench.cmd"),
            ]
            await link.wait_connected()
            await svc.wait_ready()
            await asyncio.sleep(0.3)
            sent = 0
            lock_ms: list[float] = []
            reply_ms: list[float] = []
            stop = time.monotonic() + seconds

            async def flood() -> None:
                # The attacker is another process (as it would be): it does not share this loop.
                nonlocal sent
                proc = await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "facegate.handlers.commands.flood_bench",
                    "--attacker",
                    str(port),
                    str(rate),
                    str(seconds),
                    stdout=asyncio.subprocess.PIPE,
                )
                out, _ = await proc.communicate()
                sent = int(out.decode().strip() or 0)

            async def operator() -> None:
                async with aiomqtt.Client("127.0.0.1", port, identifier="op") as op:
                    await op.subscribe(f"{BASE}/reply/op/#", qos=1)
                    await asyncio.sleep(1.0)  # let the flood build a backlog first
                    n = 0
                    while time.monotonic() < stop - 1.0:
                        n += 1
                        for verb in ("lockdown", "release"):
                            while True:  # a 'release' may meet a full queue ('busy'): retry it
                                env = envelope.build(
                                    verb,
                                    {},
                                    device_id="gate-1",
                                    ts_ms=int(time.time() * 1000),
                                    operator="alice",
                                    key=alice,
                                    reply_to=f"{BASE}/reply/op/{n}",
                                    correlation_id=f"{verb}-{n}",
                                )
                                t0 = time.monotonic()
                                await op.publish(f"{BASE}/cmd/{verb}", envelope.encode(env), qos=1)
                                if verb == "lockdown":
                                    while not door.locked_down:  # noqa: ASYNC110  # measuring the state itself, at 1 ms resolution
                                        await asyncio.sleep(0.001)
                                    lock_ms.append((time.monotonic() - t0) * 1000)
                                body = b""
                                # 'busy' goes to the device's own reply topic: give up after 3 s.
                                with contextlib.suppress(TimeoutError):
                                    async with asyncio.timeout(3.0 if verb == "release" else 60.0):
                                        async for m in op.messages:
                                            body = bytes(m.payload)
                                            if f'"correlation_id":"{verb}-{n}"'.encode() in body:
                                                break
                                if verb == "lockdown":
                                    reply_ms.append((time.monotonic() - t0) * 1000)
                                if b'"ok":true' in body or verb == "lockdown":
                                    break
                                await asyncio.sleep(0.2)
                        await asyncio.sleep(1.0)

            await asyncio.wait_for(asyncio.gather(flood(), operator()), seconds + 120)
            for t in tasks:
                t.cancel()
    s = svc.stats
    return {
        "rate": rate,
        "sent": sent,
        "lockdowns": len(lock_ms),
        "lock_p50_ms": statistics.median(lock_ms) if lock_ms else None,
        "lock_max_ms": max(lock_ms, default=None),
        "reply_p50_ms": statistics.median(reply_ms) if reply_ms else None,
        "reply_max_ms": max(reply_ms, default=None),
        "refused": sum(s.refused.values()),
        "failed": s.failed,
        "busy_dropped": s.busy_dropped,
        "urgent": s.urgent,
    }


async def _attack(port: int, rate: float, seconds: float) -> int:
    hostile = _hostile(Ed25519PrivateKey.generate())
    sent = 0
    async with aiomqtt.Client("127.0.0.1", port, identifier="mallory") as attacker:
        t0 = time.monotonic()
        stop = t0 + seconds
        while time.monotonic() < stop:
            verb, payload = hostile[sent % len(hostile)]
            await attacker.publish(f"{BASE}/cmd/{verb}", payload, qos=0)
            sent += 1
            delay = t0 + sent / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
    return sent


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--attacker":
        print(asyncio.run(_attack(int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]))))
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=float, action="append", help="flood messages/s (repeatable)")
    ap.add_argument("--seconds", type=float, default=15.0)
    args = ap.parse_args()
    import logging  # noqa: PLC0415  # only the benchmark silences the per-refusal log lines

    import structlog  # noqa: PLC0415

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    print(f"CPU: {cpu_model()} ({os.cpu_count()} logical); load average {os.getloadavg()}")
    for rate in args.rate or [2.0, 200.0, 2000.0]:
        port = _port()
        with tempfile.TemporaryDirectory() as tmp:
            conf = Path(tmp) / "m.conf"
            conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\nmessage_size_limit 0\n")
            broker = subprocess.Popen(  # noqa: S603  # the local mosquitto binary, our own config
                [binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            try:
                time.sleep(0.3)
                r = asyncio.run(_run(port, rate, args.seconds))
            finally:
                broker.terminate()
                broker.wait(10)
        print(
            f"flood {r['rate']:>7.0f} msg/s ({r['sent']} sent): valid lockdown -> door locked "
            f"p50 {r['lock_p50_ms']:.1f} ms, max {r['lock_max_ms']:.1f} ms; -> reply p50 "
            f"{r['reply_p50_ms']:.1f} ms, max {r['reply_max_ms']:.1f} ms over {r['lockdowns']} lockdowns; "
            f"worker: {r['refused']} refused, {r['failed']} failed, {r['busy_dropped']} busy-dropped, "
            f"{r['urgent']} via the priority lane"
        )


if __name__ == "__main__":
    main()
