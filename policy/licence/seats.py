"""The fleet licence service (``facegate licence serve``): N seats, counted per device.

It holds a vendor-signed **pool licence** (binding ``pool``, ``seats`` = N, ``service_key`` =
the public key this service signs leases with) and answers devices over MQTT request/reply
(contract: docs/licence.md, :data:`REQUEST`/:data:`REPLY`/:data:`SUMMARY` under a prefix):

* ``activate``/``renew`` with a fingerprint hash -> ``granted`` and a signed lease bound to that
  hash for ``lease_s`` seconds, or ``no_seat`` when every seat is taken, or ``revoked``;
* ``release`` frees the device's seat.

The seat table is SQLite (:mod:`facegate.storage.seats` stores it, versioned; one transaction
per request, WAL, synchronous=FULL), so the service survives kill -9 with its seats intact.
This module decides (:func:`take_seat`): a seat is used while its lease (plus the pool's grace
days) has not lapsed and it is not revoked. A retained summary (seats used/total, per-device
lease expiry) is published after every change.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiomqtt
import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ...runtime.clock import Clock, utc_iso
from ...storage.seats import SeatTable
from .document import DAY, Licence, key_id, make_body, parse, public_bytes, sign, verify
from .errors import LicenceFormatError, LicenceRefused, SeatServiceError

_log = structlog.get_logger("facegate.licence.serve")
REQUEST = "request"
REPLY = "reply"
SUMMARY = "summary"
__all__ = [
    "REPLY",
    "REQUEST",
    "SUMMARY",
    "SeatService",
    "SeatTable",
    "load_pool",
    "service_public_b64",
    "take_seat",
]
_FP_LEN = 64


def load_pool(blob: bytes, trusted: Mapping[str, bytes], service_key: Ed25519PrivateKey) -> Licence:
    """The verified pool licence; SeatServiceError says why it cannot be served."""
    try:
        pool = parse(blob)
        verify(pool, trusted)
    except (LicenceFormatError, LicenceRefused) as exc:
        raise SeatServiceError(f"pool licence: {exc}") from None
    if pool.binding_kind != "pool":
        raise SeatServiceError(f"pool licence: binding is {pool.binding_kind!r}, not 'pool'")
    if pool.binding_value != key_id(public_bytes(service_key)):
        raise SeatServiceError("pool licence: issued for another service key")
    seats = pool.body.get("seats")
    if not isinstance(seats, int) or seats < 1:
        raise SeatServiceError("pool licence: 'seats' must be a positive integer")
    return pool


def take_seat(
    table: SeatTable, fp: str, *, now: float, lease_s: float, grace_s: float, seats: int
) -> tuple[str, float]:
    """Activate or renew ``fp`` in one transaction: ('granted', expiry) | ('no_seat', 0) | ('revoked', 0).

    A revoked device stays revoked; a device whose lease (plus grace) still runs always
    renews; a new one gets a seat only while fewer than ``seats`` are used. The lease runs
    ``lease_s`` from ``now``, or to the seat's extension when that is later.
    """
    with table.transaction():
        seat = table.get(fp)
        if seat is not None and seat.state == "revoked":
            return "revoked", 0.0
        holds = seat is not None and seat.lease_expires + grace_s > now
        if not holds and table.used(now, grace_s) >= seats:
            return "no_seat", 0.0
        expires = max(now + lease_s, seat.extended_until if seat is not None else 0.0)
        table.upsert_active(fp, now=now, expires=expires)
        return "granted", expires


@dataclass
class SeatService:
    """One pool served on one broker (see module doc)."""

    pool: Licence
    service_key: Ed25519PrivateKey
    table: SeatTable
    clock: Clock
    prefix: str = "facegate/v1/_licence"
    lease_s: float = DAY

    @property
    def seats(self) -> int:
        return int(self.pool.body["seats"])

    @property
    def grace_s(self) -> float:
        return float(self.pool.grace_days * DAY)

    def handle(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """Answer one request (blocking SQLite; called in a thread)."""
        op, fp, corr = request.get("op"), request.get("fingerprint"), request.get("corr", "")
        if not isinstance(fp, str) or len(fp) != _FP_LEN or any(ch not in "0123456789abcdef" for ch in fp):
            return {"result": "error", "detail": "fingerprint must be 64 lowercase hex digits", "corr": corr}
        now = self.clock.wall()
        if now > self.pool.not_after + self.grace_s:
            return {
                "result": "error",
                "detail": "the pool licence has expired",
                "corr": corr,
                "fingerprint": fp,
            }
        if op == "release":
            self.table.set_state(fp, None, now)
            return {"result": "released", "corr": corr, "fingerprint": fp}
        if op not in ("activate", "renew"):
            return {"result": "error", "detail": "op must be activate, renew or release", "corr": corr}
        result, expires = take_seat(
            self.table, fp, now=now, lease_s=self.lease_s, grace_s=self.grace_s, seats=self.seats
        )
        reply: dict[str, Any] = {"result": result, "corr": corr, "fingerprint": fp}
        if result == "granted":
            body = make_body(
                binding=("lease", fp),
                now=now,
                days=(expires - now) / DAY,
                features=self.pool.features,
                customer=str(self.pool.body["customer"]),
                grace_days=self.pool.grace_days,
                extra={"pool": self.pool.raw.decode()},
            )
            reply |= {"lease": sign(body, self.service_key).decode(), "lease_expires": int(expires)}
        return reply

    def summary(self) -> dict[str, Any]:
        now = self.clock.wall()
        devices = []
        for fp, state, expires in self.table.rows():
            lapsed = state == "active" and expires + self.grace_s <= now
            devices.append(
                {"fingerprint": fp, "state": "lapsed" if lapsed else state, "lease_expires": utc_iso(expires)}
            )
        return {
            "pool_id": self.pool.licence_id,
            "seats_total": self.seats,
            "seats_used": self.table.used(now, self.grace_s),
            "pool_expires": utc_iso(self.pool.not_after),
            "devices": devices,
            "at": utc_iso(now),
        }

    async def serve(self, client: aiomqtt.Client, *, ready: asyncio.Event | None = None) -> None:
        """Answer requests on ``client`` until cancelled."""
        await client.subscribe(f"{self.prefix}/{REQUEST}", qos=1)
        await self._publish_summary(client)
        if ready is not None:
            ready.set()
        _log.info("licence.serve.ready", pool_id=self.pool.licence_id, seats=self.seats)
        async for message in client.messages:
            try:
                request = json.loads(bytes(message.payload))
            except (ValueError, TypeError):
                continue
            if not isinstance(request, dict):
                continue
            reply = await asyncio.to_thread(self.handle, request)
            fp = reply.get("fingerprint")
            if not isinstance(fp, str):
                continue
            await client.publish(f"{self.prefix}/{REPLY}/{fp}", json.dumps(reply).encode(), qos=1)
            _log.info("licence.serve.reply", op=request.get("op"), result=reply["result"])
            await self._publish_summary(client)

    async def _publish_summary(self, client: aiomqtt.Client) -> None:
        summary = await asyncio.to_thread(self.summary)
        await client.publish(f"{self.prefix}/{SUMMARY}", json.dumps(summary).encode(), qos=1, retain=True)


def service_public_b64(key: Ed25519PrivateKey) -> str:
    return base64.b64encode(public_bytes(key)).decode()
