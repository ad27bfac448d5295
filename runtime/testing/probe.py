"""``MqttProbe``: an outside MQTT subscriber that checks what devices publish.

It subscribes to ``<prefix>/#`` on its own connection, records every message,
and validates each payload that has a schema (``event/*``, ``status``,
``telemetry``, ``licence``) against the device's JSON schemas. A test asks:

* ``await probe.expect("event/access", decision="granted", timeout=30)``: the
  first matching message not yet returned (received since the last ``mark()``
  or arriving later), parsed and schema-checked;
* ``await probe.never("event/door", kind="unlocked", within=1)``: fails if one
  arrives (or already arrived since the mark) within the window.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import aiomqtt

from ..handlers.commands import first_error
from ..handlers.commands.schema import all_schemas


class ProbeError(AssertionError):
    """An expectation of :class:`MqttProbe` failed (an assertion, for pytest's report)."""


@dataclass(frozen=True)
class Received:
    """One message as the probe got it."""

    topic: str
    device_id: str
    suffix: str
    payload: bytes
    retain: bool

    def json(self) -> Any:
        return json.loads(self.payload)


def schema_name(suffix: str) -> str | None:
    """The schema of what a device publishes on ``suffix`` (``event/access`` -> ``event_access``).

    None for topics without one, and for ``cmd/...`` (operators' envelopes, not device output).
    """
    if suffix.startswith("cmd/"):
        return None
    name = suffix.replace("/", "_")
    return name if name in all_schemas() else None


class MqttProbe:
    """Records everything under ``prefix/#``; see the module docstring."""

    def __init__(self, host: str, port: int, *, prefix: str = "facegate/v1", protocol: str = "3.1.1") -> None:
        self.host, self.port, self.prefix = host, port, prefix
        self._version = aiomqtt.ProtocolVersion.V5 if protocol == "5" else aiomqtt.ProtocolVersion.V311
        self.messages: list[Received] = []
        self.schema_errors: list[str] = []
        self._mark = 0
        self._consumed: set[int] = set()
        self._changed = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()
        self.lost: str | None = None
        """Why the probe's own connection ended (its broker went away), or None."""

    async def __aenter__(self) -> MqttProbe:
        self._task = asyncio.create_task(self._run(), name="facegate.testing.probe")
        waiter = asyncio.create_task(self._subscribed.wait(), name="facegate.testing.probe.ready")
        done, _ = await asyncio.wait({self._task, waiter}, timeout=30, return_when=asyncio.FIRST_COMPLETED)
        if waiter not in done:
            waiter.cancel()
            if self._task in done:
                self._task.result()  # raises the connection error
            raise ProbeError(f"probe could not subscribe at {self.host}:{self.port}")
        return self

    async def __aexit__(self, *exc: object) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        try:
            async with aiomqtt.Client(
                self.host, self.port, protocol=self._version, identifier=f"facegate-probe-{id(self):x}"
            ) as client:
                await client.subscribe(f"{self.prefix}/#", qos=1)
                self._subscribed.set()
                async for message in client.messages:
                    await self._record(str(message.topic), message.payload, bool(message.retain))
        except aiomqtt.MqttError as exc:
            if not self._subscribed.is_set():
                raise
            # The broker went away (a test may kill it): keep what was recorded.
            self.lost = str(exc)

    async def _record(self, topic: str, payload: Any, retain: bool) -> None:
        raw = bytes(payload) if isinstance(payload, bytes | bytearray) else str(payload).encode()
        rest = topic.removeprefix(self.prefix + "/")
        device_id, _, suffix = rest.partition("/")
        msg = Received(topic=topic, device_id=device_id, suffix=suffix, payload=raw, retain=retain)
        name = schema_name(suffix)
        if name is not None:
            try:
                error = first_error(name, msg.json())
            except ValueError:
                error = "(root): not JSON"
            if error is not None:
                self.schema_errors.append(f"{topic}: {error}")
        async with self._changed:
            self.messages.append(msg)
            self._changed.notify_all()

    def mark(self) -> int:
        """Forget what arrived so far for the next expect/never; returns the position."""
        self._mark = len(self.messages)
        return self._mark

    def _find(self, start: int, suffix: str, device: str | None, fields: dict[str, Any]) -> int | None:
        for i in range(start, len(self.messages)):
            if i in self._consumed:
                continue
            m = self.messages[i]
            if m.suffix != suffix or (device is not None and m.device_id != device):
                continue
            try:
                body = m.json()
            except ValueError:
                continue
            if isinstance(body, dict) and all(body.get(k) == v for k, v in fields.items()):
                return i
        return None

    async def expect(
        self, suffix: str, *, timeout: float = 30.0, device: str | None = None, **fields: Any
    ) -> dict[str, Any]:
        """The first message on ``suffix`` (since the mark) whose payload has ``fields``.

        Consumes it: later calls skip it. Raises :class:`ProbeError`
        on timeout or when the payload breaks its schema.
        """
        try:
            async with asyncio.timeout(timeout), self._changed:
                while (i := self._find(self._mark, suffix, device, fields)) is None:
                    await self._changed.wait()
        except TimeoutError:
            seen = [m.suffix for m in self.messages[self._mark:]]
            raise ProbeError(f"no {suffix} with {fields} within {timeout}s; since the mark: {seen}") from None
        self._consumed.add(i)
        msg = self.messages[i]
        name = schema_name(suffix)
        body: dict[str, Any] = msg.json()
        if name is not None and (error := first_error(name, body)) is not None:
            raise ProbeError(f"{msg.topic} breaks schema {name}: {error}")
        return body

    async def wait_until(self, check: Callable[[list[Received]], bool], *, timeout: float = 30.0) -> bool:
        """Until ``check(messages)`` holds (re-checked on every arrival); False after ``timeout``."""
        try:
            async with asyncio.timeout(timeout), self._changed:
                await self._changed.wait_for(lambda: check(self.messages))
        except TimeoutError:
            return False
        return True

    async def never(self, suffix: str, *, within: float, device: str | None = None, **fields: Any) -> None:
        """Wait ``within`` seconds; fail if a matching message arrived since the mark."""
        await asyncio.sleep(within)
        if (i := self._find(self._mark, suffix, device, fields)) is not None:
            raise ProbeError(f"unexpected {self.messages[i].topic} with {fields}")


@contextlib.asynccontextmanager
async def open_probe(
    host: str, port: int, *, prefix: str = "facegate/v1", protocol: str = "3.1.1"
) -> AsyncIterator[MqttProbe]:
    """An :class:`MqttProbe` subscribed to ``prefix/#`` for the duration of the block."""
    async with MqttProbe(host, port, prefix=prefix, protocol=protocol) as probe:
        yield probe
