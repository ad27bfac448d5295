"""``facegate simulate``: a fleet of simulated devices on a broker, for fleet-manager developers.

Each device is a real facegate device (own id, keys, encrypted store, door
control, MQTT link) with simulated camera and GPIO, and a scripted stream of
people at its gate; see :mod:`facegate.testing.fleet`. ``--procs K`` splits
the fleet over K processes. Prints events/s, end-to-end latency and cost.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from . import EXIT_FAILURE, EXIT_OK, EXIT_USAGE


def register(sub: Any) -> None:
    """Add the ``simulate`` command."""
    p = sub.add_parser(
        "simulate",
        help="run a fleet of simulated devices on a broker (scripted faces and doors)",
        description="Run N simulated devices on the broker at HOST:PORT, each with its own id, keys "
        "and store and a scripted stream of people (granted, unknown, photo replay) and doors "
        "(opened after a grant, now and then forced). Prints events/s, latency and cost.",
    )
    p.add_argument("--devices", type=_count, default=10, help="number of devices (default 10)")
    p.add_argument("--broker", required=True, type=_endpoint, help="HOST:PORT of the MQTT broker")
    p.add_argument("--procs", type=_count, default=1, help="split the fleet over K processes (default 1)")
    p.add_argument("--protocol", choices=("5", "3.1.1"), default="3.1.1", help="MQTT version (default 3.1.1)")
    p.add_argument("--rate", type=float, default=0.2, help="scenes per second per device (default 0.2)")
    p.add_argument("--seconds", type=float, default=60.0, help="how long to play (default 60)")
    p.add_argument("--seed", type=int, default=1, help="seed of the scripted streams")
    p.add_argument("--broker-loss-every", type=float, default=0.0, metavar="S",
                   help="fault: each device loses its broker connection every S seconds on average "
                   "(0: never)")
    p.add_argument("--broker-loss-for", type=float, default=3.0, metavar="S",
                   help="how long each broker loss lasts (default 3 s)")
    p.add_argument("--camera-loss-every", type=float, default=0.0, metavar="S",
                   help="mean seconds between camera losses per device (0: none)")
    p.add_argument("--camera-loss-for", type=float, default=2.0, metavar="S",
                   help="how long each camera loss lasts (default 2 s)")
    p.add_argument("--first", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=_simulate)


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be >= 1")
    return value


def _endpoint(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host, int(port)


def _simulate(args: argparse.Namespace) -> int:
    if args.rate <= 0 or not math.isfinite(args.rate) or args.seconds <= 0:
        print("facegate: --rate and --seconds must be > 0", file=sys.stderr)
        return EXIT_USAGE
    if args.broker_loss_every < 0 or args.broker_loss_for <= 0:
        print("facegate: --broker-loss-every must be >= 0 and --broker-loss-for > 0", file=sys.stderr)
        return EXIT_USAGE
    if args.camera_loss_every < 0 or args.camera_loss_for <= 0:
        print("facegate: --camera-loss-every must be >= 0 and --camera-loss-for > 0", file=sys.stderr)
        return EXIT_USAGE
    summary = _split(args) if args.procs > 1 else _one(args)
    if args.json:
        print(json.dumps(summary))
    else:
        for key, value in summary.items():
            print(f"{key:>14}: {value}")
    return EXIT_OK if summary.get("events", 0) > 0 else EXIT_FAILURE


def _one(args: argparse.Namespace) -> dict[str, Any]:
    from ....testing.fleet import ExternalBroker, FleetOptions, run_fleet  # noqa: PLC0415  # heavy
    from ...logs import configure_logging  # noqa: PLC0415  # structlog: only when running

    configure_logging(device_id=f"fleet-{args.first}", level="warning")
    host, port = args.broker
    broker = ExternalBroker(host, port, args.protocol)
    opts = FleetOptions(devices=args.devices, first=args.first, rate=args.rate, seconds=args.seconds,
                        seed=args.seed + args.first, broker_loss_every_s=args.broker_loss_every,
                        broker_loss_s=args.broker_loss_for,
                        camera_loss_every_s=args.camera_loss_every, camera_loss_s=args.camera_loss_for)
    with tempfile.TemporaryDirectory(prefix="facegate-fleet-") as tmp:
        stats = asyncio.run(run_fleet(broker, Path(tmp), opts))
    return stats.summary()


def _split(args: argparse.Namespace) -> dict[str, Any]:
    """K child processes, each with its share of the devices; sums and worst-case latencies."""
    share = [args.devices // args.procs + (1 if i < args.devices % args.procs else 0)
             for i in range(args.procs)]
    host, port = args.broker
    procs, first = [], 0
    for n in share:
        argv = [sys.executable, "-m", "facegate.runtime.app.cli", "simulate", "--devices", str(n),
                "--broker", f"{host}:{port}", "--protocol", args.protocol, "--rate", str(args.rate),
                "--seconds", str(args.seconds), "--seed", str(args.seed), "--first", str(first), "--json",
                "--broker-loss-every", str(args.broker_loss_every),
                "--broker-loss-for", str(args.broker_loss_for),
                "--camera-loss-every", str(args.camera_loss_every),
                "--camera-loss-for", str(args.camera_loss_for)]
        procs.append(subprocess.Popen(argv, stdout=subprocess.PIPE, text=True))  # noqa: S603  # ourselves
        first += n
    parts = []
    for proc in procs:
        out, _ = proc.communicate()
        if proc.returncode not in (0, 1) or not out.strip():
            raise RuntimeError(f"a simulator process failed (exit {proc.returncode})")
        parts.append(json.loads(out.strip().splitlines()[-1]))
    return {
        "devices": sum(p["devices"] for p in parts),
        "procs": len(parts),
        "seconds": max(p["seconds"] for p in parts),
        "start_s": max(p["start_s"] for p in parts),
        "scenes": sum(p["scenes"] for p in parts),
        "broker_losses": sum(p["broker_losses"] for p in parts),
        "camera_losses": sum(p.get("camera_losses", 0) for p in parts),
        "unseen": sum(p.get("unseen", 0) for p in parts),
        "access_missing": sum(p.get("access_missing", 0) for p in parts),
        "drain_s": max(p.get("drain_s", 0.0) for p in parts),
        "events": sum(p["events"] for p in parts),
        "events_per_s": round(sum(p["events_per_s"] for p in parts), 1),
        "e2e_ms_p50": max((p["e2e_ms_p50"] or 0) for p in parts),
        "e2e_ms_p95": max((p["e2e_ms_p95"] or 0) for p in parts),
        "cpu_s": round(sum(p["cpu_s"] for p in parts), 1),
        "max_rss_mb": round(sum(p["max_rss_mb"] for p in parts), 1),
    }
