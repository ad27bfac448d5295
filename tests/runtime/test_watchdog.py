"""sd_notify over a real AF_UNIX datagram socket (path and abstract namespace)."""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from facegate.runtime.app.watchdog import SdNotifier, Watchdog, WatchdogError
from facegate.runtime.clock import ManualClock


@pytest.fixture(params=["path", "abstract"])
def notify_socket(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if request.param == "path":
        path = str(tmp_path / "notify.sock")
        sock.bind(path)
        env_value = path
    else:
        name = f"facegate-test-{uuid.uuid4().hex}"
        sock.bind(b"\0" + name.encode())
        env_value = "@" + name
    sock.settimeout(2.0)
    yield sock, env_value
    sock.close()


def recv(sock: socket.socket) -> str:
    return sock.recv(4096).decode()


def test_notifier_sends_ready_ping_and_stopping(notify_socket: tuple[socket.socket, str]) -> None:
    sock, addr = notify_socket
    n = SdNotifier({"NOTIFY_SOCKET": addr, "WATCHDOG_USEC": "4000000"})
    assert n.enabled and n.ping_interval == 2.0
    assert n.ready()
    assert recv(sock) == f"READY=1\nMAINPID={os.getpid()}"
    assert n.ping()
    assert recv(sock) == "WATCHDOG=1"
    assert n.stopping()
    assert recv(sock) == "STOPPING=1"
    n.close()


def test_without_notify_socket_everything_is_a_noop() -> None:
    n = SdNotifier({})
    assert not n.enabled
    assert n.ping_interval is None
    assert not n.ready()


def test_watchdog_for_another_pid_is_ignored() -> None:
    n = SdNotifier({"NOTIFY_SOCKET": "/run/x", "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"})
    assert n.ping_interval is None


@pytest.mark.parametrize(
    "env",
    [{"NOTIFY_SOCKET": "relative.sock"}, {"NOTIFY_SOCKET": "/x", "WATCHDOG_USEC": "soon"},
     {"NOTIFY_SOCKET": "/x", "WATCHDOG_USEC": "0"}],
)
def test_invalid_environment_is_a_typed_error(env: dict[str, str]) -> None:
    with pytest.raises(WatchdogError):
        SdNotifier(env)


def test_vanished_socket_does_not_raise(tmp_path: Path) -> None:
    n = SdNotifier({"NOTIFY_SOCKET": str(tmp_path / "gone.sock")})
    assert not n.ping()
    assert not n.ping()
    n.close()


@pytest.mark.asyncio
async def test_watchdog_service_ready_after_start_then_pings_at_half_interval(
    notify_socket: tuple[socket.socket, str],
) -> None:
    sock, addr = notify_socket
    sock.setblocking(False)
    clock = ManualClock()
    started = asyncio.Event()
    dog = Watchdog(SdNotifier({"NOTIFY_SOCKET": addr, "WATCHDOG_USEC": "10000000"}), clock, started)
    task = asyncio.create_task(dog.run(), name="watchdog")
    await asyncio.sleep(0)
    with pytest.raises(BlockingIOError):
        sock.recv(100)  # nothing before the device has started
    started.set()
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert recv(sock).startswith("READY=1")
    assert recv(sock) == "WATCHDOG=1"
    await clock.advance(4.9)
    with pytest.raises(BlockingIOError):
        sock.recv(100)
    await clock.advance(0.1)
    assert recv(sock) == "WATCHDOG=1"
    await clock.advance(15.0)
    assert dog.pings == 5  # at 0, 5, 10, 15 and 20 s
    dog.stopping()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    msgs = []
    while True:
        try:
            msgs.append(recv(sock))
        except BlockingIOError:
            break
    assert msgs == ["WATCHDOG=1"] * 3 + ["STOPPING=1"]
