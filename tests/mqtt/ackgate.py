"""A TCP proxy in front of a real broker that can hold the broker's SUBACKs: a slow broker, on cue.

``async with AckGate(host, port) as gate:`` listens on a free loopback port and forwards
every connection to the broker unchanged, except that, after :meth:`AckGate.hold`, the next
SUBACK the broker sends (and everything behind it, as on a stalled connection) waits until
:meth:`AckGate.release`. :attr:`AckGate.held` is set once a SUBACK is being held: the broker
has processed that SUBSCRIBE and the client is still waiting for its acknowledgement.
:attr:`AckGate.delivered` records the topic of every PUBLISH the broker sent to a client.

It is the lowest seam for the link's subscribe race: the link and the broker are real,
only the timing of one packet is chosen by the test.
"""

from __future__ import annotations

import asyncio
import contextlib

_SUBACK, _PUBLISH = 9, 3


class AckGate:
    """See the module docstring. ``host``/``port`` are where the client connects."""

    def __init__(self, target_host: str, target_port: int, *, host: str = "127.0.0.1") -> None:
        self._target = (target_host, target_port)
        self.host = host
        self.port = 0
        self.held = asyncio.Event()
        self.delivered: list[str] = []
        self._holding = False
        self._released = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._pipes: set[asyncio.Task[None]] = set()

    def hold(self) -> None:
        """Hold the next SUBACK (and what follows it) until :meth:`release`."""
        self._holding = True
        self._released.clear()

    def release(self) -> None:
        """Forward the held SUBACK; later ones pass at once."""
        self._holding = False
        self._released.set()

    async def __aenter__(self) -> AckGate:
        self._server = await asyncio.start_server(self._accept, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        for task in list(self._pipes):
            task.cancel()
        for task in list(self._pipes):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self._target)
        self._writers.update((writer, up_writer))
        for pipe in (self._raw(reader, up_writer), self._packets(up_reader, writer)):
            task = asyncio.create_task(pipe, name="ackgate.pipe")
            self._pipes.add(task)
            task.add_done_callback(self._pipes.discard)

    async def _raw(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        """Client -> broker, unchanged."""
        try:
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            dst.transport.abort()

    async def _packets(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        """Broker -> client, one MQTT packet at a time (fixed header, then the body)."""
        try:
            while True:
                header = await src.readexactly(1)
                length, shift = 0, 0
                while True:  # remaining length: a base-128 varint of up to 4 bytes
                    byte = (await src.readexactly(1))[0]
                    header += bytes((byte,))
                    length |= (byte & 0x7F) << shift
                    shift += 7
                    if not byte & 0x80:
                        break
                body = await src.readexactly(length)
                kind = header[0] >> 4
                if kind == _PUBLISH:  # the topic comes first in 3.1.1 and 5: 2-byte length, UTF-8
                    self.delivered.append(body[2 : 2 + int.from_bytes(body[:2], "big")].decode())
                if kind == _SUBACK and self._holding:
                    self.held.set()
                    await self._released.wait()
                dst.write(header + body)
                await dst.drain()
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        finally:
            dst.transport.abort()
