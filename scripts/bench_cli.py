#!/usr/bin/env python3
"""Benchmark: wall time of ``facegate --help`` and ``facegate version`` (issue target <= 0.3 s).

Runs each command N times (default 15) as a fresh process through the venv's
console script and prints min / median / p95 wall time, the CPU model and the
load average, so numbers from a loaded machine are labelled as such, and the
CPU time (user + system) of each run, which the load does not inflate.
Usage: .venv/bin/python scripts/bench_cli.py [N]
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from facegate.runtime.machine import cpu_model


def measure(argv: list[str], n: int) -> tuple[list[float], list[float]]:
    """Sorted wall times and sorted CPU (user + system) times of ``n`` runs."""
    times, cpu = [], []
    for _ in range(n):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - t0)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return sorted(times), sorted(cpu)


def main() -> int:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 15
    exe = str(Path(sys.executable).parent / "facegate")
    print(f"CPU: {cpu_model()} ({os.cpu_count()} cores), load average {os.getloadavg()}")
    for args in (["--help"], ["version"]):
        t, cpu = measure([exe, *args], n)
        p95 = t[min(len(t) - 1, round(0.95 * (len(t) - 1)))]
        print(
            f"facegate {' '.join(args):8s} n={n} wall min={t[0]:.3f}s median={statistics.median(t):.3f}s "
            f"p95={p95:.3f}s | cpu median={statistics.median(cpu):.3f}s (target <= 0.3 s)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
