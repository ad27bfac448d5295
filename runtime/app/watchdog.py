"""systemd notification (sd_notify) without libsystemd.

The protocol: datagrams of ``KEY=VALUE`` lines sent to the AF_UNIX socket
named by ``$NOTIFY_SOCKET`` (a path, or an abstract name written with a
leading ``@``). ``READY=1`` tells ``Type=notify`` units that start-up is
done, ``WATCHDOG=1`` pets the watchdog, which must happen more often than
``$WATCHDOG_USEC`` (we ping at half of it), and ``STOPPING=1`` announces a
clean shutdown. Outside systemd (no ``NOTIFY_SOCKET``) everything is a no-op.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Mapping

import structlog

from ..clock import Clock
from ..errors import RuntimeCoreError

_log = structlog.get_logger("facegate.watchdog")


class WatchdogError(RuntimeCoreError):
    """The notify socket address or watchdog interval from the environment is invalid."""


def _address(raw: str) -> str | bytes:
    if raw.startswith("@"):
        return b"\0" + raw[1:].encode()
    if raw.startswith("/"):
        return raw
    raise WatchdogError(f"NOTIFY_SOCKET must be a path or an @abstract name, got {raw!r}")


class SdNotifier:
    """Sends sd_notify datagrams. A no-op when ``NOTIFY_SOCKET`` is unset.

    ``environ`` defaults to ``os.environ``; tests pass their own mapping.
    Sending never blocks: a full or vanished socket is logged once and ignored,
    because a lost ping must not stop the device (systemd will act on it).
    """

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        raw = env.get("NOTIFY_SOCKET", "")
        self._address = _address(raw) if raw else None
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        self.watchdog_usec: int | None = None
        if usec and (not pid or pid == str(os.getpid())):
            try:
                self.watchdog_usec = int(usec)
            except ValueError:
                raise WatchdogError(f"WATCHDOG_USEC must be an integer, got {usec!r}") from None
            if self.watchdog_usec <= 0:
                raise WatchdogError("WATCHDOG_USEC must be positive")
        self._sock: socket.socket | None = None
        self._warned = False

    @property
    def enabled(self) -> bool:
        """True when started by systemd with a notify socket."""
        return self._address is not None

    @property
    def ping_interval(self) -> float | None:
        """Seconds between WATCHDOG=1 pings (half of WATCHDOG_USEC), or None."""
        return None if self.watchdog_usec is None else self.watchdog_usec / 2_000_000

    def notify(self, *lines: str) -> bool:
        """Send one datagram of ``lines``. Returns False if not sent."""
        if self._address is None:
            return False
        if self._sock is None:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.setblocking(False)
        try:
            self._sock.sendto("\n".join(lines).encode(), self._address)
        except OSError as exc:
            if not self._warned:
                _log.warning("watchdog.notify_failed", error=exc.strerror)
                self._warned = True
            return False
        if self._warned:
            _log.info("watchdog.notify_recovered")
            self._warned = False
        return True

    def ready(self) -> bool:
        """``READY=1``: start-up is complete."""
        return self.notify("READY=1", f"MAINPID={os.getpid()}")

    def ping(self) -> bool:
        """``WATCHDOG=1``: the main loop is alive."""
        return self.notify("WATCHDOG=1")

    def stopping(self) -> bool:
        """``STOPPING=1``: a clean shutdown has begun."""
        return self.notify("STOPPING=1")

    def close(self) -> None:
        """Close the socket (idempotent)."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None


class Watchdog:
    """Service ``watchdog``: READY=1 once the device has started, then WATCHDOG=1 pings.

    ``started`` is set by the Device after every service has been launched.
    Pings come from the event loop itself, so a blocked loop stops them and
    systemd restarts the unit. STOPPING=1 is sent by the Device through
    :meth:`stopping` as shutdown begins.
    """

    def __init__(self, notifier: SdNotifier, clock: Clock, started: asyncio.Event) -> None:
        self._notifier = notifier
        self._clock = clock
        self._started = started
        self._ready_sent = False
        self.pings = 0

    @property
    def name(self) -> str:
        return "watchdog"

    def stopping(self) -> None:
        """Announce shutdown to systemd."""
        self._notifier.stopping()

    async def run(self) -> None:
        await self._started.wait()
        if not self._ready_sent:
            self._notifier.ready()
            self._ready_sent = True
            _log.info("watchdog.ready", watchdog_s=self._notifier.ping_interval)
        interval = self._notifier.ping_interval
        if interval is None:
            return  # READY only: no watchdog configured for this unit
        while True:
            if self._notifier.ping():
                self.pings += 1
            await self._clock.sleep(interval)
