"""One live connection and the call guard that fails fast when it drops.

aiomqtt does not fail pending publishes/subscribes when the connection dies:
they wait for their timeout. :func:`guarded` races each call against the
session's ``lost`` future so callers learn at once that the outcome is unknown.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

import aiomqtt

from .errors import MqttNotConnected, MqttPublishTimeout

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
