"""One live connection: opening and closing its client, and the call guard that fails fast when it drops.

aiomqtt does not fail pending publishes/subscribes when the connection dies:
they wait for their timeout. :func:`guarded` races each call against the
session's ``lost`` future so callers learn at once that the outcome is unknown.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import aiomqtt
import structlog

from .errors import MqttConnectError, MqttNotConnected, MqttPublishTimeout

if TYPE_CHECKING:
    from .options import ClientOptions

_log = structlog.get_logger("facegate.mqtt")

T = TypeVar("T")


@dataclass(eq=False, slots=True)
class Session:
    """One live connection. ``lost`` resolves when it ends, failing in-flight calls fast."""

    client: aiomqtt.Client
    number: int
    lost: asyncio.Future[None]


async def guarded(session: Session, call: Coroutine[Any, Any, T]) -> T:
    """Await a client call, failing fast with MqttNotConnected if the connection drops."""
    if session.lost.done():
        call.close()
        raise MqttNotConnected("connection lost")
    task = asyncio.get_running_loop().create_task(call, name=f"mqtt.session{session.number}.call")
    try:
        await asyncio.wait((task, session.lost), return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        task.cancel()
        await reap(task)
        raise
    if not task.done():
        task.cancel()
        await reap(task)
        raise MqttNotConnected("connection lost before the broker acknowledged")
    try:
        return task.result()
    except aiomqtt.MqttCodeError as exc:
        raise MqttNotConnected(describe(exc)) from exc
    except aiomqtt.MqttError as exc:
        raise MqttPublishTimeout(describe(exc)) from exc


def new_future() -> asyncio.Future[None]:
    return asyncio.get_running_loop().create_future()


async def reap(task: asyncio.Future[Any]) -> None:
    """Wait for a cancelled helper and mark its outcome as retrieved (no loop warnings)."""
    await asyncio.wait((task,))
    if not task.cancelled():
        task.exception()


def describe(exc: BaseException) -> str:
    """A short, secret-free description of a connection error for logs and events."""
    text = str(exc) or type(exc).__name__
    cause = exc.__cause__
    if cause is not None and str(cause) and str(cause) not in text:
        text = f"{text}: {cause}"
    return text


async def open_client(
    options: ClientOptions, will: aiomqtt.Will, endpoint: tuple[str, int]
) -> aiomqtt.Client:
    """A connected client for ``endpoint`` (CONNACK received), or MqttConnectError saying why not."""
    client = options.new_client(will, endpoint)
    bound = options.connect_timeout
    try:
        async with asyncio.timeout(bound):
            await client.__aenter__()
    except aiomqtt.MqttError as exc:
        raise MqttConnectError(describe(exc)) from exc
    except TimeoutError:
        # Reset or silent before CONNACK: give up on this endpoint now (the client's own
        # timeout is longer) and release the half-open client.
        client.timeout = 1.0
        with contextlib.suppress(aiomqtt.MqttError):
            await client.__aexit__(None, None, None)
        raise MqttConnectError(f"no CONNACK within {bound:g} s (mqtt.connect_timeout_s)") from None
    return client


async def close_client(client: aiomqtt.Client) -> None:
    """Disconnect, bounding the DISCONNECT handshake; a dead connection returns at once."""
    client.timeout = 1.0
    try:
        await client.__aexit__(None, None, None)
    except aiomqtt.MqttError as exc:
        _log.debug("mqtt.link.disconnect_failed", detail=describe(exc))
