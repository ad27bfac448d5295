"""Profile the 1:N search path in parts: scan, shortlist, exact re-rank (issue 16).

``python -m facegate.handlers.recognition.scan_profile --rows 1000192`` builds
random unit rows (float16, as the matcher stores them), one
:class:`~.scan.GalleryScan` per variant (4-bit at each ``--segments`` size,
and the dynamic int8 kernel), and times, query by query with the variants
interleaved (background load hits all alike): ``scores``, ``shortlist`` and
the exact re-rank of the shortlisted rows. Probes are mated (cosine 0.6 with a
random row). It also prints the time to pack every segment and to re-pack one
(what a removal costs under the matcher's lock), the bound, the CPU and the
load average.
"""

from __future__ import annotations

import argparse
import math
import os
import time
from collections.abc import Callable
from functools import partial

import numpy as np
import numpy.typing as npt

from ...runtime.machine import cpu_label
from . import scan
from .shortlist import round_rows, shortlist


def _rows(n: int, d: int, rng: np.random.Generator) -> npt.NDArray[np.float16]:
    f16 = np.zeros((round_rows(n), d), np.float16)
    for s in range(0, n, 65_536):
        x = rng.standard_normal((min(n, s + 65_536) - s, d), dtype=np.float32)
        f16[s : s + x.shape[0]] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return f16


def _timed(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return (time.perf_counter() - t) * 1e3


def _repack_one(g: scan.GalleryScan, f16: npt.NDArray[np.float16]) -> None:
    job = g.snapshot(f16)
    assert job is not None
    g.install(g.build(job))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=1_000_192)
    p.add_argument("--queries", type=int, default=40)
    p.add_argument("--segments", default=f"{scan.SEGMENT}", help="4-bit segment sizes, comma separated")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--skip-int8", action="store_true", help="skip the dynamic int8 kernel")
    args = p.parse_args(argv)
    n, d, rng = args.rows, 128, np.random.default_rng(0)
    f16 = _rows(n, d, rng)
    qscale = 127.0 * math.sqrt(d) / 5.0  # as Matcher
    q8 = None
    variants: dict[str, tuple[int, scan.GalleryScan]] = {}
    default = scan.SEGMENT
    for size in [int(s) for s in args.segments.split(",")]:
        scan.SEGMENT = size  # the module constant, set around every call of this variant
        g = scan.GalleryScan(args.threads, qscale, pack=True)
        g.resize(n)
        ms = _timed(partial(g.pack_pending, f16))
        g.changed(0)  # what a removal leaves: one stale row in segment 0
        one = _timed(partial(_repack_one, g, f16))
        print(f"4-bit, {size}-row segments: pack all {ms / 1e3:.2f} s, re-pack one {one:.0f} ms, "
              f"codes+scales {g.packed_bytes / 1e6:.1f} MB, load {os.getloadavg()[0]:.2f}")
        variants[f"4-bit/{size}"] = (size, g)
    scan.SEGMENT = default
    if not args.skip_int8:
        q8 = np.full(f16.shape, 128, np.uint8)
        for s in range(0, n, 65_536):
            part = np.clip(np.rint(f16[s : s + 65_536].astype(np.float32) * qscale), -127, 127)
            q8[s : s + part.shape[0]] = part.astype(np.int8).view(np.uint8) ^ np.uint8(0x80)
        variants["int8 dynamic"] = (default, scan.GalleryScan(args.threads, qscale, pack=False))
    sid = np.full(round_rows(n), -1, np.int32)
    sid[:n] = np.arange(n)
    times: dict[str, dict[str, list[float]]] = {v: {"scores": [], "shortlist": [], "rerank": [],
                                                    "rows": [], "loose": []} for v in variants}
    for i in rng.integers(0, n, args.queries):
        v = f16[i].astype(np.float32)
        z = rng.standard_normal(d).astype(np.float32)
        z -= (z @ v) * v
        q = 0.6 * v + 0.8 * z / np.linalg.norm(z)
        q = (q / np.linalg.norm(q)).astype(np.float32)
        for name, (size, g) in variants.items():
            scan.SEGMENT = size
            t0 = time.perf_counter()
            y, bound = g.scores(f16, q8, n, round_rows(n), q)
            t1 = time.perf_counter()
            rows = shortlist(y, bound, sid, n, 2)
            t2 = time.perf_counter()
            _ = f16[rows].astype(np.float32) @ q
            t3 = time.perf_counter()
            for key, val in (("scores", t1 - t0), ("shortlist", t2 - t1), ("rerank", t3 - t2)):
                times[name][key].append(val * 1e3)
            times[name]["rows"].append(rows.size)
            times[name]["loose"].append(bound.loose)
    scan.SEGMENT = default
    for name, t in times.items():
        print(f"{n} rows, {name}: scores p50 {np.median(t['scores']):.2f} ms, shortlist "
              f"{np.median(t['shortlist']):.2f} ms, re-rank {np.median(t['rerank']):.2f} ms; "
              f"re-ranked rows p50 {int(np.median(t['rows']))} max {int(max(t['rows']))}; "
              f"loose bound {np.median(t['loose']):.4f}")
    print(f"CPU: {cpu_label()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
