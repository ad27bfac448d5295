"""Benchmark: the cost of licence checks at start-up and per renewal (prints numbers).

``python -m facegate.policy.licence.bench [--rounds 50] [--dir DIR]``

On a fresh encrypted store in DIR (real SQLite, real KEK) with kiosk identifier files in
DIR/root, measures p50/p99 over ``rounds`` of:

* start-up: kiosk fingerprint (file reads + SHA-256); the whole ``LicenceManager`` open
  (fingerprint, sealed clock mark, read + verify + evaluate the licence);
* periodic check: ``LicenceManager.check()`` (read, verify, evaluate, persist the clock mark);
* per renewal, service side: ``SeatService.handle`` (SQLite transaction + Ed25519 lease);
  device side: ``apply_lease`` (atomic write + fsync, chain verify vendor -> pool -> lease).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ...runtime.bus import EventBus
from ...runtime.clock import SystemClock
from ...runtime.config._convert import build_section
from ...runtime.config.licence import LicenceSection
from ...runtime.logs import configure_logging
from ...runtime.machine import cpu_model
from ...storage import KekSource, KekSourceKind, Store
from ...storage.crypto import new_key
from ...storage.kek import encode_key
from .document import issue_test_licence, key_id, make_body, public_bytes, sign
from .fingerprint import kiosk_fingerprint
from .manager import LicenceManager
from .seats import SeatService, SeatTable


def _stats(label: str, samples: Sequence[float]) -> None:
    ms = sorted(s * 1e3 for s in samples)
    p99 = ms[min(len(ms) - 1, round(0.99 * (len(ms) - 1)))]
    print(f"{label:<48} p50 {statistics.median(ms):8.3f} ms   p99 {p99:8.3f} ms   (n={len(ms)})")


async def _time(fn: Callable[[], Awaitable[object]], rounds: int) -> list[float]:
    out = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        await fn()
        out.append(time.perf_counter() - t0)
    return out


async def run(folder: Path, rounds: int) -> None:
    root = folder / "root"
    for rel, value in (
        ("sys/class/dmi/id/product_serial", "SN-BENCH"),
        ("etc/machine-id", "ab" * 16),
        ("sys/class/dmi/id/product_name", "bench"),
    ):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(value)
    os.environ["FACEGATE_BENCH_KEK"] = encode_key(new_key())
    kek = KekSource(kind=KekSourceKind.ENV, env="FACEGATE_BENCH_KEK")
    vendor = Ed25519PrivateKey.generate()
    cfg = build_section(
        LicenceSection,
        {
            "enabled": True,
            "identifier_root": str(root),
            "file": str(folder / "device.licence"),
            "vendor_keys": {"v": base64.b64encode(public_bytes(vendor)).decode()},
        },
        "licence",
        folder,
    )
    clock = SystemClock()
    print(f"CPU: {cpu_model()} ({os.cpu_count()} logical), load average {os.getloadavg()[0]:.2f}")
    _stats(
        "start-up: kiosk fingerprint",
        [_timed(lambda: kiosk_fingerprint(cfg.salt, root)) for _ in range(rounds)],
    )
    async with Store(folder / "bench.db", kek, clock=clock) as store:
        fp = kiosk_fingerprint(cfg.salt, root).value
        (folder / "device.licence").write_bytes(issue_test_licence(vendor, fp, now=clock.wall()))

        async def open_manager() -> None:
            async with LicenceManager(cfg, store=store, bus=EventBus(), clock=clock):
                pass

        _stats("start-up: LicenceManager open (whole check)", await _time(open_manager, rounds))
        async with LicenceManager(cfg, store=store, bus=EventBus(), clock=clock) as manager:
            _stats("periodic: LicenceManager.check()", await _time(manager.check, rounds))
            service_key = Ed25519PrivateKey.generate()
            pool_body = make_body(
                binding=("pool", key_id(public_bytes(service_key))),
                now=clock.wall(),
                days=365,
                extra={"seats": 10, "service_key": base64.b64encode(public_bytes(service_key)).decode()},
            )
            from .document import parse  # noqa: PLC0415

            pool = parse(sign(pool_body, vendor))
            table = SeatTable(folder / "seats.db")
            service = SeatService(pool, service_key, table, clock)
            request = {"op": "renew", "fingerprint": fp, "corr": "x"}
            samples = []
            for _ in range(rounds):
                t0 = time.perf_counter()
                await asyncio.to_thread(service.handle, request)
                samples.append(time.perf_counter() - t0)
            _stats("renewal, service: SeatService.handle", samples)
            lease = str(service.handle(request)["lease"]).encode()
            _stats(
                "renewal, device: apply_lease (write+verify)",
                await _time(lambda: manager.apply_lease(lease, override=None), rounds),
            )
            table.close()


def _timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m facegate.policy.licence.bench")
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args(argv)
    configure_logging(device_id="bench", level="warning")
    with tempfile.TemporaryDirectory(prefix="facegate-licence-bench-") as tmp:
        asyncio.run(run(args.dir or Path(tmp), max(1, args.rounds)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
