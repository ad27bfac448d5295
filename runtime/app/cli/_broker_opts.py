"""Broker connection options shared by the operator tools (``cmd``, ``fleet watch``).

The same TLS and credential settings as the device's ``[mqtt]`` section, from
options or the environment (options win):

==========================  ==============================  =========================
option                      environment                     device config equivalent
==========================  ==============================  =========================
``--broker HOST:PORT``      ``FACEGATE_MQTT_BROKER``        ``mqtt.host``/``mqtt.port``
``--username``              ``FACEGATE_MQTT_USERNAME``      ``mqtt.username``
``--password-file FILE``    ``FACEGATE_MQTT_PASSWORD_FILE``  ``mqtt.password = {file}``
(none: never on argv)       ``FACEGATE_MQTT_PASSWORD``      ``mqtt.password = {env}``
``--ca-file``               ``FACEGATE_MQTT_CA_FILE``       ``mqtt.tls.ca_file``
``--cert-file``             ``FACEGATE_MQTT_CERT_FILE``     ``mqtt.tls.cert_file``
``--key-file``              ``FACEGATE_MQTT_KEY_FILE``      ``mqtt.tls.key_file``
``--tls``                   ``FACEGATE_MQTT_TLS=1``         TLS with the system CAs
``--no-check-hostname``                                     ``mqtt.tls.check_hostname``
==========================  ==============================  =========================

Any CA/cert option implies TLS. A password is never taken from the command line
(it would show in ``ps``).
"""

from __future__ import annotations

import argparse
import os
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class BrokerOptionError(ValueError):
    """A broker option is unusable (reported as a usage error, exit 2)."""


@dataclass(frozen=True, slots=True)
class BrokerOptions:
    host: str
    port: int
    username: str | None
    password: str | None
    tls: ssl.SSLContext | None

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``aiomqtt.Client`` (after host and port)."""
        return {"username": self.username, "password": self.password, "tls_context": self.tls}


def add_broker_options(p: argparse.ArgumentParser, *, default_port: int = 1883) -> None:
    """Add the connection options (see the module docstring)."""
    p.add_argument(
        "--broker",
        default=None,
        help=f"host:port of the broker (default $FACEGATE_MQTT_BROKER or 127.0.0.1:{default_port})",
    )
    p.add_argument("--username", help="broker username (default $FACEGATE_MQTT_USERNAME)")
    p.add_argument(
        "--password-file",
        type=Path,
        help="file holding the broker password (default $FACEGATE_MQTT_PASSWORD_FILE, "
        "else $FACEGATE_MQTT_PASSWORD)",
    )
    p.add_argument("--tls", action="store_true", help="use TLS with the system CA store")
    p.add_argument("--ca-file", type=Path, help="CA bundle of the broker (implies TLS)")
    p.add_argument("--cert-file", type=Path, help="client certificate for mutual TLS")
    p.add_argument("--key-file", type=Path, help="client private key for mutual TLS")
    p.add_argument("--no-check-hostname", action="store_true", help="do not verify the broker hostname")
    p.set_defaults(_default_port=default_port)


def _path(value: Path | None, env: str) -> Path | None:
    if value is not None:
        return value
    text = os.environ.get(env)
    return Path(text) if text else None


def broker_options(args: argparse.Namespace) -> BrokerOptions:
    """Resolve the options and the environment. Raises BrokerOptionError naming the problem."""
    default = f"127.0.0.1:{getattr(args, '_default_port', 1883)}"
    broker = args.broker or os.environ.get("FACEGATE_MQTT_BROKER") or default
    host, _, port_text = broker.rpartition(":")
    try:
        port = int(port_text)
    except ValueError:
        raise BrokerOptionError(f"--broker {broker!r}: expected HOST:PORT") from None
    username = args.username or os.environ.get("FACEGATE_MQTT_USERNAME") or None
    password_file = _path(args.password_file, "FACEGATE_MQTT_PASSWORD_FILE")
    password = os.environ.get("FACEGATE_MQTT_PASSWORD") or None
    if password_file is not None:
        try:
            password = password_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise BrokerOptionError(f"password file {password_file}: {exc.strerror or exc}") from None
    ca = _path(args.ca_file, "FACEGATE_MQTT_CA_FILE")
    cert = _path(args.cert_file, "FACEGATE_MQTT_CERT_FILE")
    key = _path(args.key_file, "FACEGATE_MQTT_KEY_FILE")
    want_tls = args.tls or os.environ.get("FACEGATE_MQTT_TLS") == "1" or ca is not None or cert is not None
    tls = _context(ca, cert, key, check_hostname=not args.no_check_hostname) if want_tls else None
    return BrokerOptions(host or "127.0.0.1", port, username, password, tls)


def _context(ca: Path | None, cert: Path | None, key: Path | None, *, check_hostname: bool) -> ssl.SSLContext:
    if (cert is None) != (key is None):
        raise BrokerOptionError("--cert-file and --key-file must be given together")
    try:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca) if ca else None)
    except (OSError, ssl.SSLError) as exc:
        raise BrokerOptionError(f"cannot load CA file {ca}: {exc}") from None
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = check_hostname
    if not check_hostname:
        ctx.verify_mode = ssl.CERT_REQUIRED  # still verify the chain
    if cert is not None and key is not None:
        try:
            ctx.load_cert_chain(str(cert), str(key))
        except (OSError, ssl.SSLError) as exc:
            raise BrokerOptionError(f"cannot load client certificate {cert} / key {key}: {exc}") from None
    return ctx
