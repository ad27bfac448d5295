#!/usr/bin/env python3
"""Benchmark: `facegate simulate` fleets of N devices on one Mosquitto (issue 13 target: 100).

For each N (default 10 50 100 200) starts a fresh Mosquitto on a free loopback
port, runs ``facegate simulate --devices N --seconds S --json`` as a child
process (``--procs K`` optional) and prints: start-up time, events/s received
by an outside subscriber, end-to-end latency p50/p95 (event ``at`` to receipt),
simulator CPU (seconds and % of one core), Mosquitto CPU, RSS total and per
device. Labels the CPU model and load average: numbers from a loaded machine
are marked as such.

Usage: .venv/bin/python scripts/bench_fleet.py [--sizes 10,50,100,200] [--seconds 30] [--procs 1]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from facegate.runtime.machine import cpu_model
from facegate.testing.broker import MosquittoProcess, mosquitto_binary


def proc_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--sizes", default="10,50,100,200")
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--rate", type=float, default=0.2)
    p.add_argument("--procs", type=int, default=1)
    args = p.parse_args()
    binary = mosquitto_binary()
    if binary is None:
        print("mosquitto is not installed", file=sys.stderr)
        return 1
    exe = str(Path(sys.executable).parent / "facegate")
    print(f"CPU: {cpu_model()} ({os.cpu_count()} cores), load average before: {os.getloadavg()}")
    print(f"rate {args.rate} scenes/s/device, {args.seconds:.0f} s per size, --procs {args.procs}")
    header = ("N", "start_s", "events/s", "p50_ms", "p95_ms", "sim_cpu_s", "sim_cpu%", "mosq_cpu_s",
              "rss_MB", "rss/dev_MB", "+MB/dev", "load1")
    first: tuple[int, float] | None = None
    print("  ".join(f"{h:>10}" for h in header))
    for n in (int(x) for x in args.sizes.split(",")):
        with tempfile.TemporaryDirectory(prefix="facegate-bench-fleet-") as tmp:
            broker = MosquittoProcess(binary, Path(tmp))
            broker.start()
            try:
                assert broker._proc is not None
                mosq0 = proc_cpu_s(broker._proc.pid)
                out = subprocess.run(
                    [exe, "simulate", "--devices", str(n), "--broker", f"{broker.host}:{broker.port}",
                     "--seconds", str(args.seconds), "--rate", str(args.rate), "--procs", str(args.procs),
                     "--json"],
                    capture_output=True, text=True, check=False, timeout=args.seconds + 600,
                )
                mosq = proc_cpu_s(broker._proc.pid) - mosq0
            finally:
                broker.stop()
        if out.returncode != 0:
            print(f"{n:>10}  failed (exit {out.returncode}): {out.stderr[-500:]}")
            continue
        s = json.loads(out.stdout.strip().splitlines()[-1])
        cpu_pct = 100 * s["cpu_s"] / (s["seconds"] + s["start_s"])
        # Marginal memory per device against the first size (the interpreter and libraries
        # are paid once per process).
        marginal = "-" if first is None or n == first[0] else round(
            (s["max_rss_mb"] - first[1]) / (n - first[0]), 2)
        first = first or (n, s["max_rss_mb"])
        row = (n, s["start_s"], s["events_per_s"], s["e2e_ms_p50"], s["e2e_ms_p95"], s["cpu_s"],
               round(cpu_pct), round(mosq, 1), s["max_rss_mb"], round(s["max_rss_mb"] / n, 2), marginal,
               round(os.getloadavg()[0], 1))
        print("  ".join(f"{v!s:>10}" for v in row), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
