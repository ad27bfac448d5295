"""TLS to a real Mosquitto: CA verification and hostname checking."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from facegate.runtime.bus import EventBus
from facegate.runtime.clock import SystemClock
from facegate.runtime.events import ComponentStateChanged
from facegate.runtime.mqtt import LinkState, MqttLink

from ..fixtures.brokers import MosquittoBroker, require_mosquitto
from .util import load, until


def _write_pki(folder: Path, server_names: list[str]) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for ``server_names`` (DNS names or IPs)."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "facegate test CA")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = []
    for n in server_names:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            sans.append(x509.DNSName(n))
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, server_names[0])]))
        .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    ca_file, cert_file, key_file = folder / "ca.pem", folder / "server.pem", folder / "server.key"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return ca_file, cert_file, key_file


def _tls_mosquitto(tmp_path: Path, names: list[str]) -> tuple[MosquittoBroker, Path]:
    ca, cert, key = _write_pki(tmp_path / "pki", names)
    broker = MosquittoBroker(
        require_mosquitto(), tmp_path / "mosq",
        extra=f"cafile {ca}\ncertfile {cert}\nkeyfile {key}\n",
    )
    broker.start()
    return broker, ca


@pytest.mark.mosquitto
@pytest.mark.asyncio
async def test_tls_with_ca_and_hostname_check(tmp_path: Path) -> None:
    broker, ca = await asyncio.to_thread(_tls_mosquitto, tmp_path, ["localhost", "127.0.0.1"])
    try:
        loaded = load(tmp_path, broker, host="localhost", tls={"ca_file": str(ca)})
        async with MqttLink.from_config(loaded, clock=SystemClock()) as link:
            await asyncio.wait_for(link.wait_connected(), 10)
            await link.publish("event/test", b"{}", qos=1)  # a PUBACK over TLS
    finally:
        await asyncio.to_thread(broker.close)


@pytest.mark.mosquitto
@pytest.mark.asyncio
async def test_tls_hostname_mismatch_is_refused_unless_check_disabled(tmp_path: Path) -> None:
    broker, ca = await asyncio.to_thread(_tls_mosquitto, tmp_path, ["broker.example"])
    try:
        bus = EventBus()
        strict = load(tmp_path, broker, tls={"ca_file": str(ca)}, name="strict.toml")
        async with bus.subscribe(ComponentStateChanged, name="t") as sub:
            async with MqttLink.from_config(strict, clock=SystemClock(), bus=bus) as link:
                await until(lambda: link.state is LinkState.RECONNECTING)
                await asyncio.sleep(0.3)
                assert link.state is LinkState.RECONNECTING, "a wrong hostname never connects"
            details = [ev.detail for ev in iter(sub.get_nowait, None)]
        assert any("certificate" in d.lower() or "hostname" in d.lower() for d in details), details
        lax = load(
            tmp_path, broker, tls={"ca_file": str(ca), "check_hostname": False}, name="lax.toml"
        )
        async with MqttLink.from_config(lax, clock=SystemClock()) as link:
            await asyncio.wait_for(link.wait_connected(), 10)
    finally:
        await asyncio.to_thread(broker.close)
