"""Translate the ``[mqtt]`` config section into aiomqtt client arguments.

Kept apart from the link so the rules (protocol choice, TLS, credentials) are
testable without a broker and the link never touches raw config.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from ..config.core import MqttSection, TlsSection, parse_endpoint
from .checked import CheckedClient
from .errors import MqttTlsConfigError
from .topics import check_topic


@dataclass(frozen=True, kw_only=True, slots=True)
class ClientOptions:
    """Everything needed to open one connection; built once, reused on every reconnect."""

    host: str
    port: int
    client_id: str
    protocol: aiomqtt.ProtocolVersion
    keepalive: int
    username: str | None
    password: str | None
    tls: ssl.SSLContext | None
    timeout: float
    endpoints: tuple[tuple[str, int], ...] = ()
    """Every broker endpoint to fail over between, in order; empty means ``(host, port)`` only."""
    connect_timeout: float = 5.0
    """Bound of one connection attempt until CONNACK (``mqtt.connect_timeout_s``)."""

    @property
    def all_endpoints(self) -> tuple[tuple[str, int], ...]:
        """The endpoints the link rotates through (at least ``(host, port)``)."""
        return self.endpoints or ((self.host, self.port),)

    def __repr__(self) -> str:  # the password must never reach a log line through repr()
        return (
            f"ClientOptions(host={self.host!r}, port={self.port}, endpoints={len(self.all_endpoints)}, "
            f"client_id={self.client_id!r}, "
            f"protocol={self.protocol.name}, keepalive={self.keepalive}, "
            f"username={self.username!r}, password={'***' if self.password else None}, "
            f"tls={self.tls is not None})"
        )

    def new_client(self, will: aiomqtt.Will, endpoint: tuple[str, int] | None = None) -> aiomqtt.Client:
        """A fresh aiomqtt client (one per connection attempt: its futures are single-use)."""
        host, port = endpoint or (self.host, self.port)
        client = CheckedClient(
            host,
            port,
            identifier=self.client_id,
            protocol=self.protocol,
            keepalive=self.keepalive,
            username=self.username,
            password=self.password,
            will=will,
            clean_session=True if self.protocol is not aiomqtt.ProtocolVersion.V5 else None,
            tls_context=self.tls,
            timeout=self.timeout,
            # The outbox drain keeps a window of QoS 1 publishes on the wire.
            max_inflight_messages=256,
        )
        # aiomqtt warns per publish above this; a full drain window is normal, not a problem.
        client.pending_calls_threshold = 1024
        return client

    def publish_properties(
        self, response_topic: str | None, correlation_data: bytes | None
    ) -> Properties | None:
        """MQTT 5 PUBLISH properties for a reply; None under 3.1.1 (the payload carries them there).

        Raises MqttTopicError for an invalid ``response_topic``.
        """
        if self.protocol is not aiomqtt.ProtocolVersion.V5:
            return None
        if response_topic is None and correlation_data is None:
            return None
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]  # paho leaves __init__ unannotated
        if response_topic is not None:
            props.ResponseTopic = check_topic(response_topic)
        if correlation_data is not None:
            props.CorrelationData = correlation_data
        return props


def effective_protocol(cfg: MqttSection) -> aiomqtt.ProtocolVersion:
    """The protocol to speak. The embedded amqtt broker implements 3.1.1 only."""
    if cfg.broker == "embedded" or cfg.protocol == "3.1.1":
        return aiomqtt.ProtocolVersion.V311
    return aiomqtt.ProtocolVersion.V5


def tls_context(tls: TlsSection) -> ssl.SSLContext:
    """A client SSL context: CA (or system roots), optional client cert, hostname check.

    Raises MqttTlsConfigError naming the file that could not be loaded.
    """
    try:
        ctx = ssl.create_default_context(
            ssl.Purpose.SERVER_AUTH, cafile=str(tls.ca_file) if tls.ca_file else None
        )
    except (OSError, ssl.SSLError) as exc:
        raise MqttTlsConfigError(f"cannot load CA file {tls.ca_file}: {exc}") from None
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    # paho derives its own hostname check from this attribute (tls_set_context).
    ctx.check_hostname = tls.check_hostname
    if tls.cert_file is not None and tls.key_file is not None:
        try:
            ctx.load_cert_chain(str(tls.cert_file), str(tls.key_file))
        except (OSError, ssl.SSLError) as exc:
            raise MqttTlsConfigError(
                f"cannot load client certificate {tls.cert_file} / key {tls.key_file}: {exc}"
            ) from None
    return ctx


def client_options(cfg: MqttSection, *, device_id: str, timeout: float = 10.0) -> ClientOptions:
    """Build :class:`ClientOptions` from config. Raises MqttTlsConfigError."""
    ctx = tls_context(cfg.tls) if cfg.tls is not None else None
    endpoints = tuple(e for e in (parse_endpoint(h) for h in cfg.hosts) if e is not None)
    host, port = endpoints[0] if endpoints else (cfg.host, cfg.port)
    return ClientOptions(
        endpoints=endpoints,
        host=host,
        port=port,
        client_id=cfg.client_id or f"facegate-{device_id}",
        protocol=effective_protocol(cfg),
        keepalive=cfg.keepalive,
        username=cfg.username,
        password=cfg.password.reveal() if cfg.password is not None else None,
        tls=ctx,
        timeout=timeout,
        connect_timeout=cfg.connect_timeout_s,
    )
