"""Storage benchmarks: ``python -m facegate.storage.bench [--sizes 10000,100000] [--big]``.

Prints gallery load time and peak RSS per gallery size (each load in a fresh
process so RSS is its own), enrolment writes per second (single and bulk),
and outbox append / mark-delivered rates. Files go to a temporary directory
on the same filesystem as ``--dir`` (default: system temp).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import structlog

from .crypto import new_key
from .kek import KekSource, KekSourceKind, encode_key
from .outbox import EventClass
from .store import Store

ENV = "FACEGATE_BENCH_KEK"
DIM = 128
PER_SUBJECT = 5


class _ArraySink:
    """Collects batches like a matcher would (one float32 matrix at the end)."""

    def __init__(self) -> None:
        self.parts: list[npt.NDArray[np.float32]] = []
        self.ids: list[str] = []

    def add_batch(
        self,
        subject_ids: Sequence[str],
        template_ids: Sequence[str],
        embeddings: npt.NDArray[np.float32],
        model_id: str,
    ) -> None:
        self.parts.append(embeddings)
        self.ids.extend(subject_ids)

    def add(
        self, subject_id: str, template_id: str, embedding: npt.NDArray[np.float32], model_id: str
    ) -> None:
        self.add_batch([subject_id], [template_id], embedding.reshape(1, -1), model_id)

    def remove_subject(self, subject_id: str) -> int:
        return 0


def _source() -> KekSource:
    return KekSource(kind=KekSourceKind.ENV, env=ENV)


async def _build(path: Path, templates: int) -> float:
    rng = np.random.default_rng(0)
    subjects = templates // PER_SUBJECT
    start = time.perf_counter()
    async with Store(path, _source(), max_templates_per_subject=PER_SUBJECT) as st:
        for first in range(0, subjects, 1000):
            n = min(1000, subjects - first)
            vecs = rng.standard_normal((n, PER_SUBJECT, DIM)).astype(np.float32)
            await st.gallery.enroll_many([(f"s{first + i:07d}", vecs[i]) for i in range(n)], "sface-2021dec")
    return time.perf_counter() - start


async def _load(path: Path) -> dict[str, float]:
    t0 = time.perf_counter()
    async with Store(path, _source()) as st:
        t1 = time.perf_counter()
        sink = _ArraySink()
        report = await st.gallery.load_all(sink)
        matrix = np.concatenate(sink.parts) if sink.parts else np.empty((0, DIM), np.float32)
        t2 = time.perf_counter()
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "open_s": t1 - t0,
        "load_s": t2 - t1,
        "templates": float(matrix.shape[0]),
        "failures": float(len(report.failures)),
        "peak_rss_mb": rss_mb,
    }


def _load_in_child(path: Path) -> dict[str, float]:
    out = subprocess.run(  # noqa: S603  # runs this module with the current interpreter
        [sys.executable, "-m", "facegate.storage.bench", "--load-only", str(path)],
        check=True,
        capture_output=True,
        text=True,
        env=os.environ,
    ).stdout
    result: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return result


async def _enrol_rates(path: Path) -> dict[str, float]:
    rng = np.random.default_rng(1)
    async with Store(path, _source()) as st:
        n = 100
        t0 = time.perf_counter()
        for i in range(n):
            await st.gallery.enroll(f"single{i}", rng.standard_normal((1, DIM)), "m")
        single = n / (time.perf_counter() - t0)
        batch = [(f"bulk{i}", rng.standard_normal((1, DIM))) for i in range(5000)]
        t0 = time.perf_counter()
        for i in range(0, len(batch), 500):
            await st.gallery.enroll_many(batch[i : i + 500], "m")
        bulk = len(batch) / (time.perf_counter() - t0)
    return {"single_per_s": single, "bulk_per_s": bulk}


async def _outbox_rates(path: Path) -> dict[str, float]:
    async with Store(path, _source(), outbox_max_pending=1_000_000) as st:
        ob = st.outbox
        payload = b'{"decision":"granted","subject_id":"s0000001","score":0.71}'
        n = 300
        t0 = time.perf_counter()
        for _ in range(n):
            await ob.append("facegate/v1/gate/event/access", payload, klass=EventClass.ACCESS)
        durable = n / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        for _ in range(n):
            await ob.append("facegate/v1/gate/telemetry", payload, klass=EventClass.TELEMETRY)
        relaxed = n / (time.perf_counter() - t0)
        m = 20_000
        t0 = time.perf_counter()
        async with st.transaction() as tx:
            for _ in range(m):
                await ob.append_in(tx, "facegate/v1/gate/event/access", payload, klass=EventClass.ACCESS)
        batched = m / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        marked = 0
        after = 0
        while True:
            page = await ob.pending(limit=500, after_seq=after)
            if not page:
                break
            marked += await ob.mark_delivered([r.event_id for r in page])
            after = page[-1].seq
        drain = marked / (time.perf_counter() - t0)
    return {
        "append_durable_per_s": durable,
        "append_telemetry_per_s": relaxed,
        "append_in_one_tx_per_s": batched,
        "drain_read_and_mark_per_s": drain,
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmarks and print a Markdown table."""
    p = argparse.ArgumentParser(prog="python -m facegate.storage.bench")
    p.add_argument("--sizes", default="10000,100000", help="gallery sizes (templates)")
    p.add_argument("--big", action="store_true", help="also 1,000,000 templates (slow to build)")
    p.add_argument("--dir", type=Path, default=None, help="where to put the temporary files")
    p.add_argument("--load-only", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
    os.environ.setdefault(ENV, encode_key(new_key()))
    if args.load_only:
        print(json.dumps(asyncio.run(_load(args.load_only))))
        return 0
    sizes = [int(s) for s in args.sizes.split(",") if s]
    if args.big:
        sizes.append(1_000_000)
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        root = Path(tmp)
        print(f"# storage benchmark ({os.cpu_count()} CPUs, Python {sys.version.split()[0]})")
        print("| templates | build s | open s (quick_check, KEK) | load_all s | peak RSS MB |")
        print("|---:|---:|---:|---:|---:|")
        for size in sizes:
            db = root / f"g{size}.db"
            build = asyncio.run(_build(db, size))
            r: dict[str, Any] = _load_in_child(db)
            assert int(r["templates"]) == size - size % PER_SUBJECT and r["failures"] == 0
            print(
                f"| {size:,} | {build:.1f} | {r['open_s']:.2f} | {r['load_s']:.2f} | "
                f"{r['peak_rss_mb']:.0f} |",
                flush=True,
            )
        e = asyncio.run(_enrol_rates(root / "enrol.db"))
        print(f"\nenrolment, single (1 template, durable, own transactions): {e['single_per_s']:.0f}/s")
        print(f"enrolment, bulk (500 subjects per transaction): {e['bulk_per_s']:.0f} subjects/s")
        o = asyncio.run(_outbox_rates(root / "outbox.db"))
        print(f"outbox append, durable access event per transaction: {o['append_durable_per_s']:.0f}/s")
        print(f"outbox append, telemetry (synchronous=NORMAL): {o['append_telemetry_per_s']:.0f}/s")
        print(f"outbox append, 20k events in one transaction: {o['append_in_one_tx_per_s']:.0f}/s")
        print(f"outbox drain (pending 500 + mark_delivered): {o['drain_read_and_mark_per_s']:.0f}/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
