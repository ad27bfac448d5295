"""The embedded broker: amqtt running in-process on a loopback address.

Used when ``mqtt.broker = "embedded"`` (the demo and development). It speaks
MQTT 3.1.1 only, honours retained messages and Last Wills, keeps everything in
memory (a restart forgets retained messages) and accepts anonymous clients,
which is why it refuses to listen on anything but loopback.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import structlog

from .errors import EmbeddedBrokerError

if TYPE_CHECKING:
    from amqtt.broker import Broker

_log = structlog.get_logger("facegate.mqtt")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class EmbeddedBroker:
    """An amqtt broker as an async context manager and a supervised Service.

    ``async with EmbeddedBroker("127.0.0.1", 1883) as broker:`` listens until
    the block exits. ``port=0`` picks a free port, readable from :attr:`port`.
    Raises EmbeddedBrokerError for a non-loopback host or a port in use.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 1883, *, name: str = "mqtt.broker"):
        if not _is_loopback(host):
            raise EmbeddedBrokerError(
                f"the embedded broker allows anonymous clients and listens on loopback only, "
                f"not {host!r}"
            )
        if not 0 <= port <= 65535:
            raise EmbeddedBrokerError(f"invalid port {port}")
        self._host = host
        self._port = port
        self._name = name
        self._broker: Broker | None = None

    @property
    def name(self) -> str:
        return self._name

    @property
    def host(self) -> str:
        return self._host

    @property
    def port(self) -> int:
        """The bound port (the real one when constructed with port 0 and running)."""
        return self._port

    @property
    def running(self) -> bool:
        return self._broker is not None

    def _config(self) -> dict[str, Any]:
        host = "[::1]" if ":" in self._host else self._host
        return {
            "listeners": {"default": {"type": "tcp", "bind": f"{host}:{self._port}"}},
            # Only anonymous auth: no $SYS publisher and no per-packet logging plugins.
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}
            },
        }

    async def start(self) -> None:
        """Start listening. Raises EmbeddedBrokerError."""
        if self._broker is not None:
            return
        # amqtt (+10 MB RSS) is imported only when the embedded broker is configured and started.
        from amqtt.broker import Broker  # noqa: PLC0415 - see above
        from amqtt.errors import BrokerError  # noqa: PLC0415 - see above

        # amqtt logs every connection at INFO and a traceback on bind failure;
        # our own error below says it once.
        logging.getLogger("amqtt").setLevel(logging.CRITICAL)
        broker = Broker(self._config())
        try:
            await broker.start()
        except BrokerError as exc:
            raise EmbeddedBrokerError(
                f"cannot start the embedded broker on {self._host}:{self._port}: {exc.__cause__ or exc}"
            ) from None
        server = broker._servers.get("default")  # amqtt exposes no bound address
        instance = getattr(server, "instance", None)
        sockets = getattr(instance, "sockets", None)
        if sockets:
            self._port = int(sockets[0].getsockname()[1])
        self._broker = broker
        _log.info("mqtt.broker.started", host=self._host, port=self._port)

    async def stop(self) -> None:
        """Stop listening and drop every session (retained messages are forgotten)."""
        broker, self._broker = self._broker, None
        if broker is None:
            return
        await broker.shutdown()
        _log.info("mqtt.broker.stopped", host=self._host, port=self._port)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def run(self) -> None:
        """Service entry: serve until cancelled, then shut down."""
        async with self:
            await asyncio.get_running_loop().create_future()
