"""Brokers for tests: a real Mosquitto on a free loopback port, or the embedded amqtt broker.

:func:`open_test_broker` yields a :class:`BrokerInfo`: Mosquitto when its
binary is installed (MQTT 5 and 3.1.1), otherwise facegate's embedded broker
(MQTT 3.1.1 only). Both are async context managers and stop on exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import os
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Literal, Protocol

HOST = "127.0.0.1"
BrokerChoice = Literal["auto", "mosquitto", "embedded"]


class BrokerStartError(RuntimeError):
    """A test broker could not be started."""


class BrokerInfo(Protocol):
    """What a test needs to know about a running broker."""

    @property
    def kind(self) -> str: ...
    @property
    def host(self) -> str: ...
    @property
    def port(self) -> int: ...
    @property
    def protocol(self) -> str:
        """The MQTT version devices should speak to it: ``"5"`` or ``"3.1.1"``."""
        ...


def mosquitto_binary() -> str | None:
    """Path of the ``mosquitto`` binary, or None when it is not installed."""
    found = shutil.which("mosquitto")
    if found:
        return found
    return "/usr/sbin/mosquitto" if os.access("/usr/sbin/mosquitto", os.X_OK) else None


def broker_choice(prefer: BrokerChoice = "auto") -> str:
    """``"mosquitto"`` or ``"embedded"``: what :func:`open_test_broker` will start."""
    if prefer == "embedded" or (prefer == "auto" and mosquitto_binary() is None):
        return "embedded"
    return "mosquitto"


def free_port() -> int:
    """A TCP port free on loopback right now."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((HOST, port)) == 0


class MosquittoProcess:
    """A mosquitto subprocess with a generated config in ``workdir`` (persistence on)."""

    kind = "mosquitto"
    protocol = "5"

    def __init__(self, binary: str, workdir: Path) -> None:
        self.binary = binary
        self.host = HOST
        self.port = free_port()
        workdir.mkdir(parents=True, exist_ok=True)
        self.log_file = workdir / "mosquitto.log"
        self.conf = workdir / "mosquitto.conf"
        data = workdir / "data"
        data.mkdir(exist_ok=True)
        self.conf.write_text(
            f"listener {self.port} {HOST}\nallow_anonymous true\npersistence true\n"
            f"persistence_location {data}/\nautosave_on_changes true\n"
            f"log_dest file {self.log_file}\nlog_type error\nlog_type warning\n"
            # Started as root, mosquitto would drop to user "mosquitto" and lose the data folder.
            f"user {getpass.getuser()}\n"
        )
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 15.0) -> None:
        self._proc = subprocess.Popen(  # noqa: S603  # the mosquitto binary found on PATH, our own config
            [self.binary, "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                log = self.log_file.read_text() if self.log_file.exists() else ""
                code = self._proc.returncode
                raise BrokerStartError(f"mosquitto exited at start (code {code}): {log[-1000:]}")
            if _port_open(self.port):
                return
            time.sleep(0.02)
        self.stop()
        raise BrokerStartError(f"mosquitto did not listen on port {self.port} within {timeout}s")

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)

    async def __aenter__(self) -> MosquittoProcess:
        await asyncio.to_thread(self.start)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.to_thread(self.stop)


class EmbeddedMqttBroker:
    """facegate's in-process amqtt broker on a free port (MQTT 3.1.1)."""

    kind = "embedded"
    protocol = "3.1.1"

    def __init__(self) -> None:
        self.host = HOST
        self.port = free_port()
        self._broker: object | None = None

    async def __aenter__(self) -> EmbeddedMqttBroker:
        from ..runtime.mqtt import EmbeddedBroker  # noqa: PLC0415  # amqtt only when this broker is used

        broker = EmbeddedBroker(self.host, self.port)
        await broker.start()
        self._broker = broker
        return self

    async def __aexit__(self, *exc: object) -> None:
        from ..runtime.mqtt import EmbeddedBroker  # noqa: PLC0415  # see __aenter__

        broker, self._broker = self._broker, None
        if isinstance(broker, EmbeddedBroker):
            await broker.stop()


@contextlib.asynccontextmanager
async def open_test_broker(workdir: Path, prefer: BrokerChoice = "auto") -> AsyncIterator[BrokerInfo]:
    """Start the broker :func:`broker_choice` picks; stop it on exit."""
    if broker_choice(prefer) == "mosquitto":
        binary = mosquitto_binary()
        if binary is None:
            raise BrokerStartError("mosquitto is not installed (apt-get install mosquitto)")
        async with MosquittoProcess(binary, workdir) as broker:
            yield broker
    else:
        async with EmbeddedMqttBroker() as embedded:
            yield embedded
