"""``facegate licence serve`` and ``facegate licence seats``: the fleet seat service's CLI."""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import random
import signal
import sys
from pathlib import Path
from typing import Any

import aiomqtt

from .document import key_id
from .errors import LicenceError
from .keys import read_private_key
from .seats import SeatService, SeatTable, load_pool


def register_serve(cmds: Any) -> None:
    srv = cmds.add_parser("serve", help="(fleet) run the seat service for a pool licence")
    srv.add_argument("--pool", type=Path, required=True, help="vendor-signed pool licence")
    srv.add_argument("--key", type=Path, required=True, help="this service's private key (signs leases)")
    srv.add_argument("--db", type=Path, required=True, help="seat table (SQLite; created if missing)")
    srv.add_argument(
        "--vendor-key",
        action="append",
        required=True,
        metavar="B64",
        help="trusted vendor public key (repeatable)",
    )
    srv.add_argument("--broker", default="127.0.0.1:1883", help="host:port")
    srv.add_argument("--prefix", default="facegate/v1/_licence", help="topic prefix of the contract")
    srv.add_argument("--lease-s", type=float, default=86_400.0, help="lease length in seconds")
    srv.add_argument("--client-id", default="facegate-licence-service")
    srv.set_defaults(handler=_serve)
    seats = cmds.add_parser("seats", help="(fleet) list, revoke or release devices in a seat table")
    seats.add_argument("--db", type=Path, required=True, help="seat table of 'licence serve'")
    seats.add_argument("action", choices=("list", "revoke", "release", "extend"))
    seats.add_argument("fingerprint", nargs="?", help="device fingerprint hash (revoke/release/extend)")
    seats.add_argument("--days", type=float, default=30.0, help="extend: leases run at least N days from now")
    seats.set_defaults(handler=_seats)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise LicenceError(f"{path}: {exc.strerror}") from None


def _serve(args: argparse.Namespace) -> int:
    from ...runtime.clock import SystemClock  # noqa: PLC0415  # CLI only

    try:
        vendor = [base64.b64decode(k, validate=True) for k in args.vendor_key]
    except ValueError:
        print("facegate: --vendor-key is not base64", file=sys.stderr)
        return 2
    key = read_private_key(args.key)
    pool = load_pool(_read(args.pool), {key_id(v): v for v in vendor}, key)
    host, _, port = args.broker.rpartition(":")
    table = SeatTable(args.db)
    service = SeatService(pool, key, table, SystemClock(), prefix=args.prefix, lease_s=args.lease_s)
    print(f"licence service: pool {pool.licence_id}, {service.seats} seats, on {args.broker}", flush=True)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with asyncio.TaskGroup() as tg:
            task = tg.create_task(
                _connected(service, host or "127.0.0.1", int(port), args.client_id), name="licence.serve"
            )
            await stop.wait()
            task.cancel()

    try:
        asyncio.run(main())
    finally:
        table.close()
    return 0


async def _connected(service: SeatService, host: str, port: int, client_id: str) -> None:
    """Serve on the broker, reconnecting with capped, jittered backoff."""
    delay = 0.2
    while True:
        try:
            async with aiomqtt.Client(host, port, identifier=client_id, clean_session=False) as client:
                delay = 0.2
                await service.serve(client)
        except aiomqtt.MqttError as exc:
            print(f"licence service: broker connection lost ({exc}); retrying", file=sys.stderr, flush=True)
        await asyncio.sleep(delay * (0.5 + random.random()))  # jitter, not crypto
        delay = min(delay * 2, 10.0)


def _seats(args: argparse.Namespace) -> int:
    import time  # noqa: PLC0415

    table = SeatTable(args.db)
    try:
        if args.action == "list":
            print(
                json.dumps(
                    [{"fingerprint": f, "state": s, "lease_expires": e} for f, s, e in table.rows()], indent=1
                )
            )
            return 0
        if not args.fingerprint:
            print("facegate: revoke/release need a fingerprint", file=sys.stderr)
            return 2
        now = time.time()
        if args.action == "extend":
            found = table.extend(args.fingerprint, now + args.days * 86_400, now)
        else:
            found = table.set_state(args.fingerprint, "revoked" if args.action == "revoke" else None, now)
        print(f"{args.action.removesuffix('e')}ed" if found else "no such device in the seat table")
        return 0 if found else 1
    finally:
        table.close()
