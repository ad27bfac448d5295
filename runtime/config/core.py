"""Config sections of the runtime core: device identity, MQTT, logging, lifecycle."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ._fields import FieldError, setting
from .secrets import SecretRef

_DEVICE_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


def _is_loopback(host: str) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class DeviceSection:
    """Who this device is."""

    id: str = setting(doc="Device id: lowercase letters, digits, '-' and '_'; used in MQTT topics.")
    site: str = setting("", doc="Free-text site or building name, reported in the birth message.")

    def check(self) -> None:
        if not _DEVICE_ID.match(self.id):
            raise FieldError("id", f"{self.id!r} is not a valid device id ([a-z0-9][a-z0-9_-]*)")


@dataclass(frozen=True)
class TlsSection:
    """TLS to the broker. Hostname checking is on unless explicitly disabled."""

    ca_file: Path | None = setting(None, doc="CA bundle that signs the broker's certificate.")
    cert_file: Path | None = setting(None, doc="Client certificate (mutual TLS), optional.")
    key_file: Path | None = setting(None, doc="Client private key, required with cert_file.")
    check_hostname: bool = setting(True, doc="Verify the broker's hostname against its certificate.")

    def check(self) -> None:
        if (self.cert_file is None) != (self.key_file is None):
            raise FieldError("key_file", "cert_file and key_file must be given together")
        for name in ("ca_file", "cert_file", "key_file"):
            path = getattr(self, name)
            if path is not None and not path.is_file():
                raise FieldError(name, f"file {path} does not exist")


@dataclass(frozen=True)
class MqttSection:
    """The broker connection."""

    broker: Literal["embedded", "external"] = setting(
        "embedded",
        doc="'embedded' runs an amqtt broker in-process on host:port; 'external' connects to one.",
    )
    host: str = setting("127.0.0.1", doc="Broker host name or address.")
    port: int = setting(1883, doc="Broker TCP port.", ge=1, le=65535)
    protocol: Literal["3.1.1", "5"] = setting(
        "5",
        doc="MQTT protocol version to speak with an external broker "
        "(the embedded amqtt broker speaks 3.1.1 only, so the link uses 3.1.1 with it).",
    )
    client_id: str = setting("", doc="MQTT client id; empty means 'facegate-<device id>'.")
    keepalive: int = setting(
        15, doc="Keepalive in seconds; the broker fires the will after 1.5x.", ge=5, le=3600
    )
    topic_prefix: str = setting("facegate/v1", doc="Topic prefix; topics are <prefix>/<device id>/...")
    username: str | None = setting(None, doc="Username, if the broker requires one.")
    password: SecretRef | None = setting(
        None, doc="Password: { file = ... }, { env = ... } or { credential = ... }.", secret=True
    )
    tls: TlsSection | None = setting(None, doc="TLS settings; absent means plain TCP.")
    reconnect_min_s: float = setting(0.5, doc="First reconnect delay in seconds.", gt=0)
    reconnect_max_s: float = setting(30.0, doc="Cap of the jittered reconnect delay.", gt=0)
    telemetry_interval_s: float = setting(30.0, doc="Seconds between telemetry publishes.", gt=0)
    redeliver_window_s: float = setting(
        5.0,
        doc="After a reconnect, events the broker acknowledged this many seconds before the "
        "connection was lost are published again (a broker can acknowledge, then die before "
        "saving). Must exceed the broker's save delay (Mosquitto: autosave_interval); 0 disables.",
        ge=0,
        le=3600,
    )
    hosts: tuple[str, ...] = setting(
        (),
        doc="Several broker endpoints 'HOST:PORT' (a clustered broker); when set, host/port are "
        "not used: the link connects to the first and fails over to the next on each failed or "
        "lost connection, with the same jittered backoff. Telemetry reports the endpoint in use.",
    )
    connect_timeout_s: float = setting(
        5.0,
        doc="Bound of one connection attempt (TCP, TLS, CONNECT until CONNACK) in seconds: an "
        "endpoint that accepts and then resets or stays silent before CONNACK counts as failed "
        "after this, and the link fails over to the next endpoint.",
        gt=0,
        le=120,
    )

    def check(self) -> None:
        for i, entry in enumerate(self.hosts):
            if parse_endpoint(entry) is None:
                raise FieldError(f"hosts[{i}]", "expected 'HOST:PORT' with a port 1-65535")
        if self.hosts and self.broker == "embedded":
            raise FieldError("hosts", "several endpoints need broker = 'external'")
        if self.reconnect_max_s < self.reconnect_min_s:
            raise FieldError("reconnect_max_s", "must be >= reconnect_min_s")
        if self.password is not None and self.username is None:
            raise FieldError("password", "a password needs a username")
        if not self.topic_prefix or self.topic_prefix.endswith("/") or any(
            c in self.topic_prefix for c in "#+"
        ):
            raise FieldError("topic_prefix", "must be non-empty, without '#', '+' or a trailing '/'")
        if self.broker == "embedded" and self.tls is not None:
            raise FieldError("tls", "the embedded broker listens on plain TCP on loopback only")
        if self.broker == "embedded" and not _is_loopback(self.host):
            raise FieldError(
                "host", "the embedded broker listens on loopback only (127.0.0.1, ::1, localhost)"
            )


@dataclass(frozen=True)
class LoggingSection:
    """Structured logging."""

    level: Literal["debug", "info", "warning", "error"] = setting("info", doc="Minimum level.")
    format: Literal["auto", "json", "console"] = setting(
        "auto", doc="'auto' is console on a TTY and JSON lines otherwise."
    )


@dataclass(frozen=True)
class LifecycleSection:
    """Start-up and shutdown behaviour."""

    shutdown_grace_s: float = setting(
        5.0, doc="Graceful shutdown budget; after it, tasks are cancelled (forced path).", gt=0
    )
    restart_min_s: float = setting(0.5, doc="First restart delay of a crashed task.", gt=0)
    restart_max_s: float = setting(30.0, doc="Cap of the jittered restart delay.", gt=0)
    watchdog: bool = setting(
        True, doc="Send sd_notify READY/WATCHDOG when systemd sets NOTIFY_SOCKET and WATCHDOG_USEC."
    )

    def check(self) -> None:
        if self.restart_max_s < self.restart_min_s:
            raise FieldError("restart_max_s", "must be >= restart_min_s")


def parse_endpoint(entry: str) -> tuple[str, int] | None:
    """``"host:port"`` (``"[::1]:port"`` for IPv6) as a pair, or None when malformed."""
    host, sep, port = entry.strip().rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        return None
    return host, int(port)
