"""Seats counted per device: ``facegate licence serve`` (a real subprocess) and real devices.

N=2 seats: two devices activate, the third gets ``no_seat``; a revoked device loses
recognition within one renewal and its seat goes to the waiting device; the service is killed
with SIGKILL and restarted with its seat table intact; a device cut off from the service runs
on its lease, then through the grace days, then expires.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from facegate.handlers.commands import first_error
from facegate.policy.licence import LicenceState, evaluate, make_body, sign
from facegate.policy.licence.document import DAY, key_id, public_bytes, trust_list
from facegate.runtime.app.device import Device
from facegate.runtime.config import load_config

from ...fixtures.brokers import MosquittoBroker
from ...mqtt.device_util import KEK_ENV, device_config, fresh_kek
from ...mqtt.util import observe
from .conftest import b64pub, write_identifiers

pytestmark = pytest.mark.mosquitto
PREFIX = "facegate/v1/_licence"


class SeatServer:
    """``facegate licence serve`` as a subprocess (kill -9 and restart on the same table)."""

    def __init__(self, tmp: Path, broker: MosquittoBroker, vendor: Ed25519PrivateKey, seats: int) -> None:
        self.db = tmp / "seats.db"
        key = Ed25519PrivateKey.generate()
        self.key_file = tmp / "service.key"
        self.key_file.write_bytes(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
        self.key_file.chmod(0o600)
        body = make_body(
            binding=("pool", key_id(public_bytes(key))),
            now=time.time(),
            days=365,
            grace_days=2,
            features={"max_subjects": 100},
            customer="fleet",
            extra={"seats": seats, "service_key": b64pub(key)},
        )
        self.pool = tmp / "pool.licence"
        self.pool.write_bytes(sign(body, vendor))
        self.vendor = b64pub(vendor)
        self.broker = broker
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(  # our own CLI with test paths
            [
                sys.executable,
                "-m",
                "facegate.runtime.app.cli",
                "licence",
                "serve",
                "--pool",
                str(self.pool),
                "--key",
                str(self.key_file),
                "--db",
                str(self.db),
                "--vendor-key",
                self.vendor,
                "--broker",
                f"{self.broker.host}:{self.broker.port}",
                "--lease-s",
                "60",
                "--client-id",
                f"lic-svc-{os.getpid()}",
            ],
            stdout=subprocess.DEVNULL,
        )

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def seats_cli(self, *args: str) -> str:
        out = subprocess.run(  # our own CLI
            [sys.executable, "-m", "facegate.runtime.app.cli", "licence", "seats", "--db", str(self.db),
             *args],
            check=True,
            capture_output=True,
            timeout=60,
        )
        return out.stdout.decode()


@contextlib.asynccontextmanager
async def run_device(
    tmp: Path, broker: MosquittoBroker, vendor: Ed25519PrivateKey, name: str
) -> AsyncIterator[Device]:
    folder = tmp / name
    folder.mkdir()
    root = write_identifiers(folder / "root", serial=f"SN-{name}", machine=f"machine-{name}")
    extra = f"""
[licence]
enabled = true
identifier_root = "{root}"
file = "{folder / "device.licence"}"
seat_service = true
renew_s = 1.0
request_timeout_s = 3.0
check_interval_s = 0.5

[licence.vendor_keys]
vendor = "{b64pub(vendor)}"
"""
    path = device_config(
        folder, broker, operators={}, cache_dir=None, recognition=False, device_id=name, extra=extra
    )
    async with Device(load_config(path), handle_signals=False) as dev:
        yield dev
        dev.request_shutdown("test over")


def is_summary(seen: Any) -> bool:
    return bool(seen.topic == f"{PREFIX}/summary")


def licence_of(dev: Device) -> Any:
    return dev.parts.licence


async def until_state(dev: Device, state: LicenceState, within: float = 60.0) -> None:
    async with asyncio.timeout(within):
        while licence_of(dev).status.state is not state:  # noqa: ASYNC110  # polled state, generous limit
            await asyncio.sleep(0.1)


@pytest.mark.asyncio
async def test_seats_no_seat_revoke_reuse_kill9_and_cut_off(
    tmp_path: Path, mosquitto: MosquittoBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEK_ENV, fresh_kek())
    vendor = Ed25519PrivateKey.generate()
    server = SeatServer(tmp_path, mosquitto, vendor, seats=2)
    server.start()
    try:
        async with (
            observe(mosquitto, f"{PREFIX}/#", client_id="fleet-view") as obs,
            run_device(tmp_path, mosquitto, vendor, "gate-1") as d1,
            run_device(tmp_path, mosquitto, vendor, "gate-2") as d2,
        ):
            await until_state(d1, LicenceState.VALID)
            await until_state(d2, LicenceState.VALID)
            assert licence_of(d1).recognition_allowed() and licence_of(d1).status.binding == "lease"
            async with run_device(tmp_path, mosquitto, vendor, "gate-3") as d3:
                await until_state(d3, LicenceState.NO_SEAT)
                assert not licence_of(d3).recognition_allowed()
                full = await obs.wait_for(lambda s: is_summary(s) and s.json()["seats_used"] == 2, within=30)
                assert full.retain or full.json()["seats_total"] == 2

                # Revoke gate-1: it loses recognition within one renewal, gate-3 takes the seat.
                fp1 = licence_of(d1).fingerprint.value
                assert server.seats_cli("revoke", fp1).strip() == "revoked"
                await until_state(d1, LicenceState.REVOKED, within=30)
                assert not licence_of(d1).recognition_allowed() and not licence_of(d1).path.exists()
                await until_state(d3, LicenceState.VALID, within=30)

                # kill -9 the service and restart it: the seat table is intact.
                server.kill()
                server.start()
                mark = len(obs.messages)
                again = await obs.wait_for(lambda s: is_summary(s) and not s.retain, within=60, start=mark)
                table = {d["fingerprint"]: d["state"] for d in again.json()["devices"]}
                assert table[fp1] == "revoked" and again.json()["seats_used"] == 2
                assert table[licence_of(d3).fingerprint.value] == "active"
                await asyncio.sleep(2.5)  # a renewal round against the restarted service
                assert licence_of(d2).status.state is LicenceState.VALID
                assert licence_of(d1).status.state is LicenceState.REVOKED

                # Cut off: the service is gone; the device runs on its lease.
                server.kill()
                seat = licence_of(d2)
                await asyncio.sleep(5.0)  # more than request_timeout_s: renewals go unanswered
                assert seat.status.state is LicenceState.VALID and seat.recognition_allowed()
                lease = seat.path.read_bytes()
                fp = seat.fingerprint
                trusted = trust_list({"v": b64pub(vendor)})
                end = json.loads(lease)["body"]["not_after"]

                def at(t: float) -> LicenceState:
                    return evaluate(
                        lease, trusted=trusted, fingerprint=fp, now=t, high_water=0, tolerance_s=600
                    ).state

                assert at(end - 1) is LicenceState.VALID
                assert at(end + 1) is LicenceState.GRACE  # renewal overdue: grace days of the pool
                assert at(end + 2 * DAY - 1) is LicenceState.GRACE
                assert at(end + 2 * DAY + 1) is LicenceState.EXPIRED
                assert base64.b64decode(b64pub(vendor))  # the lease chains to the vendor key
        # The only device data that goes to the service: the fingerprint hash (rule R43).
        requests = [m.json() for m in obs.messages if m.topic == f"{PREFIX}/request"]
        assert requests and all(set(r) == {"op", "fingerprint", "corr"} for r in requests)
        for m in obs.messages:
            kind = m.topic.removeprefix(PREFIX + "/").split("/")[0]
            assert first_error(f"licence_seat_{kind}", m.json()) is None, (m.topic, m.payload[:200])
    finally:
        if server.proc is not None and server.proc.poll() is None:
            server.kill()
