"""A TCP proxy in front of a broker that can cut the network: broker loss for one device.

``async with LossyLink(host, port) as link:`` listens on a free loopback port
and forwards every connection to the broker. ``await link.cut(seconds)`` drops
all current connections at once (no MQTT DISCONNECT: the broker fires the
wills), stops listening (new connections are refused) and listens again on
the same port when the time is up, as a lost and restored uplink would.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from .broker import free_port

_CHUNK = 65536


class LossyLink:
    """See the module docstring. ``host``/``port`` are where devices connect."""

    def __init__(self, target_host: str, target_port: int, *, host: str = "127.0.0.1") -> None:
        self._target = (target_host, target_port)
        self.host = host
        self.port = free_port()
        self._down_until = 0.0
        self._writers: set[asyncio.StreamWriter] = set()
        self._pipes: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None
        self.cuts = 0
        self.reset_handshakes = False
        """While True, each new connection is reset once the client has sent its first bytes
        (MQTT CONNECT), before the broker could answer: a broker that dies mid-handshake."""
        self.handshakes_reset = 0

    @property
    def down(self) -> bool:
        return time.monotonic() < self._down_until

    async def __aenter__(self) -> LossyLink:
        self._server = await asyncio.start_server(self._accept, self.host, self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.close()
        self._drop_all()
        for task in list(self._pipes):
            task.cancel()
        for task in list(self._pipes):
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await task
        if self._server is not None:
            await self._server.wait_closed()

    async def cut(self, seconds: float) -> None:
        """Drop every connection now, refuse new ones for ``seconds``, then accept again."""
        self.cuts += 1
        self._down_until = time.monotonic() + seconds
        server, self._server = self._server, None
        if server is not None:
            server.close()
        self._drop_all()
        if server is not None:
            await server.wait_closed()
        await asyncio.sleep(max(0.0, self._down_until - time.monotonic()))
        self._server = await asyncio.start_server(self._accept, self.host, self.port)

    def _drop_all(self) -> None:
        for writer in list(self._writers):
            transport = writer.transport
            transport.abort()  # RST, like a dead uplink: no clean close
        self._writers.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.down:
            writer.transport.abort()
            return
        if self.reset_handshakes:
            with contextlib.suppress(ConnectionError, OSError):
                await reader.read(_CHUNK)  # the CONNECT
            self.handshakes_reset += 1
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, up_writer))
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(src, dst), name="netfault.pipe")
            self._pipes.add(task)
            task.add_done_callback(self._pipes.discard)

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while data := await src.read(_CHUNK):
                dst.write(data)
                await dst.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            self._writers.discard(dst)
            dst.transport.abort()
