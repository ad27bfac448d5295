"""MQTT benchmark: ``python -m facegate.handlers.reporting.bench [--events N] [--rate R]``.

Starts a throw-away Mosquitto (``/usr/sbin/mosquitto``) on a free loopback
port, a real SQLite store (env KEK) and the durable event pipeline, and prints:

* access-event latency, bus publish -> outside subscriber, p50/p95 (paced events);
* sustained events/s (offered at ``--rate``) and whether the outbox grew;
* backlog drain rate: N events committed while the link is down, then drained.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import aiomqtt

from ...runtime.bus import EventBus
from ...runtime.clock import SystemClock
from ...runtime.config import load_config
from ...runtime.events import AccessDecision, Decision
from ...runtime.mqtt.link import MqttLink
from ...storage import KekSource, KekSourceKind, Store
from ...storage.crypto import new_key
from ...storage.kek import encode_key
from .codec import EventCodec
from .durable import DurableEvents


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _event(n: int, at: float) -> AccessDecision:
    return AccessDecision(at=at, event_id=f"b-{n}", decision=Decision.GRANTED, reason="match",
                          subject_id="s-1", score=0.8, runner_up=0.1, margin=0.7, threshold=0.5)


async def _bench(work: Path, port: int, events: int, rate: float) -> None:  # noqa: PLR0915  # one linear benchmark script
    cfg = work / "device.toml"
    cfg.write_text(f'[device]\nid = "bench"\n[mqtt]\nbroker = "external"\nport = {port}\n'
                   'reconnect_min_s = 0.05\nreconnect_max_s = 0.2\n')
    os.environ["FACEGATE_BENCH_KEK"] = encode_key(new_key())
    clock, bus = SystemClock(), EventBus()
    link = MqttLink.from_config(load_config(cfg), clock=clock, bus=bus)
    kek = KekSource(kind=KekSourceKind.ENV, env="FACEGATE_BENCH_KEK")
    async with Store(work / "bench.db", kek, clock=clock) as store:
        pipeline = DurableEvents(bus=bus, outbox=store.outbox, link=link, codec=EventCodec("bench"),
                                 base_topic=link.topics.base, clock=clock)
        arrived: dict[str, float] = {}
        got = asyncio.Event()
        async with aiomqtt.Client("127.0.0.1", port, identifier="bench-sub") as sub:
            await sub.subscribe("facegate/v1/bench/event/access", qos=1)

            async def consume() -> None:
                async for m in sub.messages:
                    raw = m.payload if isinstance(m.payload, bytes) else b""
                    i = raw.find(b'"event_id":"') + 12
                    arrived.setdefault(raw[i:raw.index(b'"', i)].decode(), time.perf_counter())
                    got.set()

            async with asyncio.TaskGroup() as tg:
                c = tg.create_task(consume(), name="bench.consume")
                # 1. drain: commit N events with the link down, then connect.
                p = tg.create_task(pipeline.run(), name="bench.events")
                await pipeline.wait_subscribed()
                for n in range(events):
                    bus.publish(_event(n, clock.wall()))
                    if n % 1000 == 999:  # stay inside the sink's bus queue
                        while pipeline.stats.appended < n - 500:  # noqa: ASYNC110  # polls foreign counters by design
                            await asyncio.sleep(0.001)
                while pipeline.stats.appended < events:  # noqa: ASYNC110  # polls foreign counters by design
                    await asyncio.sleep(0.01)
                t0 = time.perf_counter()
                async with link:
                    while pipeline.backlog:  # noqa: ASYNC110  # polls foreign counters by design
                        await asyncio.sleep(0.005)
                    drain = events / (time.perf_counter() - t0)
                    # 2. latency, paced at 20/s.
                    lat: list[float] = []
                    for n in range(200):
                        key = f"b-l{n}"
                        sent = time.perf_counter()
                        bus.publish(AccessDecision(at=clock.wall(), event_id=key, decision=Decision.DENIED,
                                                   reason="x", subject_id=None, score=None, runner_up=None,
                                                   margin=None, threshold=0.5))
                        while key not in arrived:
                            got.clear()
                            await got.wait()
                        lat.append((arrived[key] - sent) * 1000)
                        await asyncio.sleep(0.05)
                    # 3. sustained: offer `rate` events/s for 5 s.
                    start, sent_n, peak = time.perf_counter(), 0, 0
                    while (el := time.perf_counter() - start) < 5.0:
                        due = int(el * rate)
                        while sent_n < due:
                            bus.publish(_event(10_000_000 + sent_n, clock.wall()))
                            sent_n += 1
                        peak = max(peak, pipeline.backlog)
                        await asyncio.sleep(0.01)
                    while pipeline.backlog:  # noqa: ASYNC110  # polls foreign counters by design
                        await asyncio.sleep(0.01)
                    total = time.perf_counter() - start
                p.cancel()
                c.cancel()
    q = statistics.quantiles(lat, n=20)
    print("MQTT benchmark (loopback Mosquitto, QoS 1, SQLite outbox; shared machine: numbers are noisy)")
    print(f"  backlog drain: {events} events in {events / drain:.2f} s = {drain:,.0f} events/s")
    print(f"  access-event latency bus->subscriber: p50 {statistics.median(lat):.2f} ms, p95 {q[18]:.2f} ms")
    print(f"  sustained: offered {rate:.0f}/s for 5 s, {sent_n / total:,.0f} events/s end-to-end, "
          f"peak outbox backlog {peak} (bounded: {'yes' if peak < rate else 'NO'})")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m facegate.handlers.reporting.bench")
    parser.add_argument("--events", type=int, default=10_000, help="backlog size for the drain test")
    parser.add_argument("--rate", type=float, default=500.0, help="offered events/s for the sustained test")
    args = parser.parse_args()
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    with tempfile.TemporaryDirectory() as tmp:
        port = _port()
        conf = Path(tmp) / "m.conf"
        conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\n")
        proc = subprocess.Popen([binary, "-c", str(conf)], stderr=subprocess.DEVNULL)  # noqa: S603  # the local mosquitto binary
        try:
            time.sleep(0.3)
            asyncio.run(_bench(Path(tmp), port, args.events, args.rate))
        finally:
            proc.terminate()
            proc.wait()


if __name__ == "__main__":
    main()
