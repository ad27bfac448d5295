"""A fleet of simulated facegate devices on one broker, with a scripted stream of events.

Each device is a real :class:`~facegate.runtime.app.device.Device` (own id, own
encrypted store and key, own operator key, door control, durable MQTT link and
retained status) built by :class:`~.device.SimDevice`. What happens in front of
the gates is scripted per device from a seeded random stream at ``rate`` scenes
per second: a known person granted (the relay releases, the door opens and
closes), a stranger (unknown), a photo held up (denied, liveness) and now and
then a forced door. Decisions enter at the device's event bus, where the
recognition pipeline would put them: running the ONNX models for hundreds of
devices in one process would measure the models, not the fleet. Everything
downstream (door handler, GPIO, outbox, MQTT) is the real device. With
``camera_loss_every_s`` each device's simulated camera loses its source now
and then (no frames: the scenes meanwhile are nobody recognised). With
``broker_loss_every_s`` each device reaches the broker through its own
:class:`~.netfault.LossyLink`, whose uplink dies now and then: the device
reconnects with its backoff and its outbox delivers what it held.

A collector subscribes to ``<prefix>/+/event/#`` like a fleet manager would and
measures events/s and end-to-end latency (payload ``at`` to receipt).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import resource
import statistics
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import aiomqtt

from ..runtime.events import AccessDecision, ComponentStateChanged, Decision, StageResult
from .broker import BrokerInfo
from .device import SimDevice, SimOptions
from .netfault import LossyLink

THRESHOLD = 0.39


@dataclass(frozen=True)
class ExternalBroker:
    """A broker someone else runs (``facegate simulate --broker HOST:PORT``)."""

    host: str
    port: int
    protocol: str = "3.1.1"
    """``"5"`` or ``"3.1.1"``."""
    kind: str = "external"


@dataclass(frozen=True)
class FleetOptions:
    """How many devices, how busy, for how long."""

    devices: int = 10
    first: int = 0
    """Index of the first device (``sim-0000``...); lets several processes share a broker."""
    rate: float = 0.2
    """Scenes per second per device (a busy entrance: one person every 5 s)."""
    seconds: float = 30.0
    seed: int = 1
    prefix: str = "facegate/v1"
    start_concurrency: int = 8
    broker_loss_every_s: float = 0.0
    """Mean seconds between broker losses per device (its uplink cut for ``broker_loss_s``);
    0: none. Each device connects through its own :class:`~.netfault.LossyLink`."""
    broker_loss_s: float = 3.0
    camera_loss_every_s: float = 0.0
    """Mean seconds between camera losses per device (its simulated camera's source fails for
    ``camera_loss_s``: state ``reconnecting``, no frames, nobody recognised); 0: none."""
    camera_loss_s: float = 2.0
    drain_limit_s: float = 60.0
    """After the scripted period, how long to wait at most for every scripted access event to reach
    the collector (the outboxes drain after a cut uplink reconnects) before the devices stop."""


@dataclass
class FleetStats:
    """What the collector saw, and what the fleet cost."""

    devices: int = 0
    seconds: float = 0.0
    start_s: float = 0.0
    measure_from: float = float("inf")
    """Wall time the scripted period began: earlier events (start-up) are not counted."""
    scenes: int = 0
    broker_losses: int = 0
    camera_losses: int = 0
    unseen: int = 0
    """Scenes nobody was recognised in because the device's camera was lost."""
    camera_states: list[tuple[str, str]] = field(default_factory=list)
    """(device, state) of every camera state change the devices published during a loss cycle."""
    sent_access: list[str] = field(default_factory=list)
    """Event ids of every scripted access decision, in order (to check nothing was lost)."""
    received: dict[str, int] = field(default_factory=dict)
    arrived_access: set[str] = field(default_factory=set)
    """Event ids of the access events the collector received (at least once)."""
    access_arrival: asyncio.Event = field(default_factory=asyncio.Event, repr=False)
    """Set by the collector on every access event (the drain clears it and waits again)."""
    drain_s: float = 0.0
    """How long the outboxes took to deliver the last scripted access events after the run."""
    latencies_ms: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        lat = sorted(self.latencies_ms)
        total = sum(self.received.values())
        return {
            "devices": self.devices,
            "seconds": round(self.seconds, 1),
            "start_s": round(self.start_s, 1),
            "scenes": self.scenes,
            "access_missing": len(set(self.sent_access) - self.arrived_access),
            "drain_s": round(self.drain_s, 1),
            "broker_losses": self.broker_losses,
            "camera_losses": self.camera_losses,
            "unseen": self.unseen,
            "events": total,
            "by_topic": dict(sorted(self.received.items())),
            "events_per_s": round(total / self.seconds, 1) if self.seconds else 0.0,
            "e2e_ms_p50": round(statistics.median(lat), 1) if lat else None,
            "e2e_ms_p95": round(lat[min(len(lat) - 1, int(0.95 * len(lat)))], 1) if lat else None,
            "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
            "max_rss_mb": round(usage.ru_maxrss / 1024, 1),
        }


def scripted_decision(dev: SimDevice, kind: Decision, subject: str | None) -> AccessDecision:
    live = StageResult(name="stillness", passed=kind is not Decision.DENIED,
                       reason="ok" if kind is not Decision.DENIED else "liveness_still")
    score = {Decision.GRANTED: 0.72, Decision.UNKNOWN: 0.08, Decision.DENIED: 0.7}.get(kind, 0.0)
    return AccessDecision(
        at=dev.clock.wall(), event_id=str(uuid.uuid4()), decision=kind,
        reason={Decision.GRANTED: "match", Decision.UNKNOWN: "no_match"}.get(kind, "liveness_still"),
        subject_id=subject, score=score, runner_up=0.1, margin=round(score - 0.1, 3),
        threshold=THRESHOLD, liveness=(live,), model_id="simulated", gallery_size=50, frames=3,
    )


async def _script(dev: SimDevice, rng: random.Random, rate: float, stats: FleetStats) -> None:
    """One device's scenes, forever (cancelled at the end of the run)."""
    bus = dev.device.bus
    while True:
        await asyncio.sleep(rng.expovariate(rate))
        stats.scenes += 1
        r = rng.random()
        kind = (Decision.GRANTED if r < 0.6 else Decision.UNKNOWN if r < 0.85
                else Decision.DENIED if r < 0.97 else None)
        if kind is not None and dev.camera.lost:  # the camera is down: nobody is recognised
            stats.unseen += 1
            continue
        if kind is None:  # a forced door (the door contact does not need the camera)
            await dev.door.open()
            await asyncio.sleep(1.0)
            await dev.door.close()
            continue
        subject = f"emp-{rng.randrange(1000, 1050)}" if kind is Decision.GRANTED else None
        event = scripted_decision(dev, kind, subject)
        stats.sent_access.append(event.event_id)
        bus.publish(event)
        if kind is Decision.GRANTED:  # the person walks through
            await asyncio.sleep(0.3)
            await dev.door.open()
            await asyncio.sleep(1.0)
            await dev.door.close()


async def _losses(link: LossyLink, rng: random.Random, opts: FleetOptions, stats: FleetStats) -> None:
    """Now and then, this device's uplink dies for ``broker_loss_s`` (the outbox holds its events)."""
    while True:
        await asyncio.sleep(rng.expovariate(1.0 / opts.broker_loss_every_s))
        stats.broker_losses += 1
        await link.cut(opts.broker_loss_s)


async def _camera_losses(dev: SimDevice, rng: random.Random, opts: FleetOptions, stats: FleetStats) -> None:
    """Now and then, this device's camera source fails for ``camera_loss_s`` and comes back.

    The state changes the device publishes on its bus (``reconnecting``, then ``streaming``) are
    recorded after each cycle.
    """
    cam = dev.camera
    async with dev.device.bus.subscribe(ComponentStateChanged, name=f"fleet.camera.{dev.id}",
                                        maxsize=64) as sub:
        while True:
            await asyncio.sleep(rng.expovariate(1.0 / opts.camera_loss_every_s))
            stats.camera_losses += 1
            await cam.lose("simulated camera loss")
            try:
                await asyncio.sleep(opts.camera_loss_s)
            finally:
                await cam.restore()
            while (ev := sub.get_nowait()) is not None:
                if ev.component == cam.name:
                    stats.camera_states.append((dev.id, ev.state))


@contextlib.asynccontextmanager
async def _collector(
    broker: BrokerInfo, prefix: str, mine: frozenset[str], stats: FleetStats
) -> AsyncIterator[None]:
    ready = asyncio.Event()

    async def run() -> None:
        version = aiomqtt.ProtocolVersion.V5 if broker.protocol == "5" else aiomqtt.ProtocolVersion.V311
        async with aiomqtt.Client(broker.host, broker.port, protocol=version,
                                  identifier=f"fleet-collector-{uuid.uuid4().hex[:8]}") as client:
            await client.subscribe(f"{prefix}/+/event/#", qos=1)
            ready.set()
            async for message in client.messages:
                now = time.time()
                device, _, suffix = str(message.topic).removeprefix(prefix + "/").partition("/")
                if device not in mine:
                    continue
                with contextlib.suppress(ValueError, TypeError, KeyError):
                    body = json.loads(message.payload)
                    if suffix == "event/access":
                        stats.arrived_access.add(str(body["event_id"]))
                        stats.access_arrival.set()
                    at = datetime.fromisoformat(str(body["at"]).replace("Z", "+00:00")).timestamp()
                    if at >= stats.measure_from:
                        stats.received[suffix] = stats.received.get(suffix, 0) + 1
                        stats.latencies_ms.append((now - at) * 1000)

    task = asyncio.create_task(run(), name="fleet.collector")
    try:
        async with asyncio.timeout(30):
            await ready.wait()
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def run_fleet(broker: BrokerInfo, folder: Path, opts: FleetOptions) -> FleetStats:
    """Start ``opts.devices`` devices, play the scripts for ``opts.seconds``, stop, report."""
    stats = FleetStats(devices=opts.devices)
    rng = random.Random(opts.seed)
    async with contextlib.AsyncExitStack() as stack:
        ids = range(opts.first, opts.first + opts.devices)
        mine = frozenset(f"sim-{i:04d}" for i in ids)
        await stack.enter_async_context(_collector(broker, opts.prefix, mine, stats))
        t0 = time.monotonic()
        devices: list[SimDevice] = []
        gate = asyncio.Semaphore(opts.start_concurrency)

        links: list[LossyLink] = []

        async def start(i: int) -> SimDevice:
            via: BrokerInfo = broker
            if opts.broker_loss_every_s > 0:
                link = await stack.enter_async_context(LossyLink(broker.host, broker.port))
                links.append(link)
                via = ExternalBroker(link.host, link.port, broker.protocol)
            dev = SimDevice(via, folder / f"sim-{i:04d}", SimOptions(
                device_id=f"sim-{i:04d}", site="fleet", topic_prefix=opts.prefix, recognition=False,
                unlock_s=2.0,
            ))
            async with gate:
                await dev.__aenter__()
            return dev

        results = await asyncio.gather(*(start(i) for i in ids), return_exceptions=True)
        for res in results:
            if isinstance(res, SimDevice):
                devices.append(res)
                stack.push_async_exit(res.__aexit__)
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            raise errors[0]
        stats.start_s = time.monotonic() - t0
        stats.measure_from = time.time()
        t1 = time.monotonic()
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(_script(d, random.Random(rng.random()), opts.rate, stats),
                                    name=f"fleet.script.{d.id}") for d in devices]
            if opts.camera_loss_every_s > 0:
                tasks += [tg.create_task(_camera_losses(d, random.Random(rng.random()), opts, stats),
                                         name=f"fleet.camera.{d.id}") for d in devices]
            tasks += [tg.create_task(_losses(link, random.Random(rng.random()), opts, stats),
                                     name=f"fleet.faults.{n}") for n, link in enumerate(links)]
            await asyncio.sleep(opts.seconds)
            for t in tasks:
                t.cancel()
        # The last events leave the outboxes (after a cut uplink came back and reconnected): wait
        # until the collector has every scripted access event, at most drain_limit_s.
        t2 = time.monotonic()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(opts.drain_limit_s):
                while not stats.arrived_access.issuperset(stats.sent_access):
                    stats.access_arrival.clear()
                    await stats.access_arrival.wait()
        stats.drain_s = time.monotonic() - t2
        stats.seconds = time.monotonic() - t1
    return stats
