"""Pulse-end error of the driver-owned relay pulse while the event loop is stalled.

``python -m facegate.drivers.gpio.bench [--runs N] [--open-s S] [--stall-factor F]``

Each run energises the relay with ``SimulatedGpio.pulse`` (the same driver path
the door controller uses), then blocks the event loop with a synchronous
sleep of ``F x S`` seconds. The pulse's end is read from the driver's own
recorded timestamps (``time.monotonic``). Prints the CPU model and the error
distribution; no pass/fail (the test suite holds the 50 ms limit).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from ...runtime.clock import SystemClock
from ...runtime.machine import cpu_model
from .simulated import SimulatedGpio

RELAY = 17

async def measure(runs: int, open_s: float, stall_factor: float) -> list[float]:
    """Pulse-end errors in seconds, one per run."""
    errors: list[float] = []
    gpio = SimulatedGpio(outputs={RELAY: False}, inputs=[], clock=SystemClock())
    async with gpio:
        for _ in range(runs):
            gpio.output_changes.clear()
            gpio.pulse(RELAY, True, open_s)
            time.sleep(open_s * stall_factor)  # noqa: ASYNC251  # the stalled loop being measured
            on, off = gpio.output_changes[-2:]
            errors.append((off.monotonic - on.monotonic) - open_s)
    return errors


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--open-s", type=float, default=1.0)
    parser.add_argument("--stall-factor", type=float, default=3.0)
    args = parser.parse_args(argv)
    errors = asyncio.run(measure(args.runs, args.open_s, args.stall_factor))
    ms = sorted(e * 1000 for e in errors)
    p99 = ms[min(len(ms) - 1, round(0.99 * (len(ms) - 1)))]
    print(f"cpu: {cpu_model()}")
    print(
        f"open time {args.open_s} s, loop stalled {args.stall_factor * args.open_s} s, "
        f"{len(ms)} runs: pulse-end error median {statistics.median(ms):+.2f} ms, "
        f"p99 {p99:+.2f} ms, max {max(ms):+.2f} ms, min {min(ms):+.2f} ms"
    )
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
