"""Service ``licence.seat``: the device side of the seat service contract (docs/licence.md).

Sends ``activate`` at start and ``renew`` every ``renew_s``; a ``granted`` reply's lease is
installed atomically, ``no_seat``/``revoked`` force that state (a revoked lease file is
deleted). When the service does not answer within ``request_timeout_s`` the device keeps
running on the lease it has: the lease evaluates to ``valid``, then ``grace`` until the pool's
grace days end, then ``expired``. Offline operation is the normal case.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Mapping
from typing import Any, Protocol

import structlog

from ...runtime.clock import Clock
from .manager import LicenceManager
from .seats import REPLY, REQUEST
from .state import LicenceState

_log = structlog.get_logger("facegate.licence")


class SeatLink(Protocol):
    """What the seat client needs from the MQTT link (:class:`~facegate.runtime.mqtt.MqttLink`)."""

    async def subscribe(self, topic_filter: str, handler: Any, *, qos: int = ...) -> None: ...

    async def wait_connected(self) -> None: ...

    async def publish_to(self, topic: str, payload: bytes, *, qos: int = ..., retain: bool = ...) -> None: ...


class SeatClient:
    """Keeps this device's seat lease fresh over the device's link (None: no MQTT, idles)."""

    def __init__(self, manager: LicenceManager, link: SeatLink | None, *, clock: Clock) -> None:
        self._manager = manager
        self._link = link
        self._clock = clock
        self._replies: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=16)
        self.last_result: str | None = None

    @property
    def name(self) -> str:
        return "licence.seat"

    async def _on_reply(self, message: Any) -> None:
        try:
            body = json.loads(message.payload)
        except ValueError:
            return
        if isinstance(body, dict) and not self._replies.full():
            self._replies.put_nowait(body)

    async def run(self) -> None:
        from ...runtime.mqtt.errors import MqttPublishError  # noqa: PLC0415  # the link is optional

        link = self._link
        if link is None:
            _log.error("licence.seat_unavailable", reason="no MQTT link: cannot reach the licence service")
            await asyncio.Event().wait()
            return
        cfg = self._manager.cfg
        fp = self._manager.fingerprint.value
        await link.subscribe(f"{cfg.seat_prefix}/{REPLY}/{fp}", self._on_reply, qos=1)
        op = "activate"
        while True:
            await link.wait_connected()
            corr = uuid.uuid4().hex[:12]
            request = {"op": op, "fingerprint": fp, "corr": corr}
            try:
                await link.publish_to(f"{cfg.seat_prefix}/{REQUEST}", json.dumps(request).encode(), qos=1)
                reply = await self._await(corr, cfg.request_timeout_s)
            except MqttPublishError as exc:
                _log.debug("licence.seat_retry", detail=str(exc))
                reply = None
            if reply is None:
                _log.warning("licence.seat_unreachable", effect="running on the current lease")
                await self._manager.check()
            else:
                await self._apply(reply)
                op = "renew"
            await self._clock.sleep(cfg.renew_s)

    async def _await(self, corr: str, timeout_s: float) -> dict[str, Any] | None:
        async def wait() -> dict[str, Any]:
            while True:
                reply = await self._replies.get()
                if reply.get("corr") == corr:
                    return reply

        waiter = asyncio.create_task(wait(), name="licence.seat.reply")
        sleeper = asyncio.create_task(self._clock.sleep(timeout_s), name="licence.seat.timeout")
        try:
            await asyncio.wait({waiter, sleeper}, return_when=asyncio.FIRST_COMPLETED)
            return waiter.result() if waiter.done() else None
        finally:
            waiter.cancel()
            sleeper.cancel()

    async def _apply(self, reply: Mapping[str, Any]) -> None:
        result = str(reply.get("result"))
        changed = result != self.last_result
        if changed:
            _log.info("licence.seat", result=result)
        self.last_result = result
        self._manager.seat = {"result": result, "lease_expires": reply.get("lease_expires")}
        if result == "granted" and isinstance(reply.get("lease"), str):
            await self._manager.apply_lease(str(reply["lease"]).encode(), override=None)
        elif result == "no_seat":
            await self._manager.apply_lease(
                None, override=(LicenceState.NO_SEAT, "every seat of the pool is taken")
            )
        elif result == "revoked":
            await self._manager.apply_lease(
                None, override=(LicenceState.REVOKED, "the licence service revoked this device")
            )
        elif changed:
            _log.warning("licence.seat_error", detail=str(reply.get("detail", ""))[:200])
            await self._manager.check()
