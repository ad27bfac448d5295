"""``facegate fleet watch``: a live table of every device on a broker (read-only).

Subscribes to ``<prefix>/+/status``, ``+/licence``, ``+/telemetry`` and
``+/event/security`` and shows, per device: online/offline, last seen,
licence state, fps, outbox backlog and the number of security alarms
(with the latest kind). Needs only read access (see docs/deployment.md).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import aiomqtt
from rich.live import Live
from rich.table import Table

from . import EXIT_FAILURE, EXIT_OK, EXIT_USAGE
from ._broker_opts import BrokerOptionError, BrokerOptions, add_broker_options, broker_options

DEVICE_ID = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
"""A device id (the config's rule): anything else on a device topic is not a device (issue 10.8)."""


@dataclass
class DeviceRow:
    """What the fleet view knows about one device."""

    state: str = "?"
    last_seen: float = 0.0
    licence: str = "?"
    fps: str = "-"
    backlog: str = "-"
    alarms: int = 0
    last_alarm: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


class Fleet:
    """Folds fleet messages into rows (pure: testable without a terminal)."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.rows: dict[str, DeviceRow] = {}

    def filters(self) -> list[str]:
        return [f"{self.prefix}/+/{t}" for t in ("status", "licence", "telemetry", "event/security")]

    def update(self, topic: str, payload: bytes, now: float) -> None:
        rest = topic.removeprefix(self.prefix + "/")
        device, _, kind = rest.partition("/")
        if DEVICE_ID.fullmatch(device) is None:
            return  # e.g. an account name with a '.': never a device
        try:
            body = json.loads(payload) if payload else {}
        except ValueError:
            return
        if not isinstance(body, dict):
            return
        row = self.rows.setdefault(device, DeviceRow())
        row.last_seen = now
        if kind == "status":
            row.state = str(body.get("state", "?"))
        elif kind == "licence":
            row.licence = str(body.get("state", "?"))
            days = body.get("days_left")
            if isinstance(days, int | float):
                row.licence += f" ({days:.0f}d)"
        elif kind == "telemetry":
            fps = body.get("fps")
            if isinstance(fps, dict) and fps:
                row.fps = ", ".join(f"{v:.1f}" for v in fps.values() if isinstance(v, int | float))
            if "outbox_backlog" in body:
                row.backlog = str(body["outbox_backlog"])
        elif kind == "event/security":
            row.alarms += 1
            row.last_alarm = str(body.get("kind", ""))

    def table(self, now: float) -> Table:
        t = Table(title=f"facegate fleet ({self.prefix})")
        for col in ("device", "state", "last seen", "licence", "fps", "backlog", "alarms"):
            t.add_column(col)
        for device, r in sorted(self.rows.items()):
            state = f"[green]{r.state}[/]" if r.state == "online" else f"[red]{r.state}[/]"
            alarms = f"[red]{r.alarms} ({r.last_alarm})[/]" if r.alarms else "0"
            t.add_row(device, state, f"{now - r.last_seen:.0f}s ago", r.licence, r.fps, r.backlog, alarms)
        return t


def register(sub: Any) -> None:
    """Add ``fleet watch``."""
    p = sub.add_parser("fleet", help="watch the devices on a broker")
    cmds = p.add_subparsers(dest="fleet_command", metavar="ACTION", required=True)
    w = cmds.add_parser("watch", help="live table: online, last seen, licence, fps, backlog, alarms")
    w.add_argument("--prefix", default="facegate/v1", help="topic prefix")
    w.add_argument("--seconds", type=float, default=None, help="stop after N seconds")
    add_broker_options(w)
    w.set_defaults(handler=_watch)


def _watch(args: argparse.Namespace) -> int:
    try:
        broker = broker_options(args)
    except BrokerOptionError as exc:
        print(f"facegate: {exc}", file=sys.stderr)
        return EXIT_USAGE
    fleet = Fleet(args.prefix)
    try:
        asyncio.run(_run(fleet, broker, args))
    except aiomqtt.MqttError as exc:
        print(f"facegate: broker: {exc}")
        return EXIT_FAILURE
    return EXIT_OK


async def _run(fleet: Fleet, broker: BrokerOptions, args: argparse.Namespace) -> None:
    async with aiomqtt.Client(broker.host, broker.port, **broker.client_kwargs()) as client:
        for f in fleet.filters():
            await client.subscribe(f, qos=1)
        with Live(fleet.table(time.time()), refresh_per_second=2) as live, contextlib.suppress(TimeoutError):
            async with asyncio.timeout(args.seconds):
                async for m in client.messages:
                    raw = m.payload if isinstance(m.payload, bytes) else b""
                    fleet.update(m.topic.value, raw, time.time())
                    live.update(fleet.table(time.time()))
