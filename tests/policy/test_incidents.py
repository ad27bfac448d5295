"""Security incidents on a whole Device: tamper input -> containment, persisted and published.

Real store (env KEK), real Mosquitto, simulated GPIO driven as the outside
world would (the lowest seam). Observed as an outside subscriber sees it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from facegate.handlers.commands import first_error
from facegate.policy.incidents import report_incident
from facegate.runtime.app.device import Device
from facegate.runtime.clock import SystemClock
from facegate.runtime.config import load_config
from facegate.runtime.events import SecurityEvent, SecurityKind
from facegate.storage import Store
from facegate.storage.errors import KekSourceError

from ..fixtures.brokers import MosquittoBroker
from ..mqtt.device_util import KEK_ENV, device_config, fresh_kek
from ..mqtt.test_device_e2e import _assert_private, grant_consent
from ..mqtt.util import Observer, observe

pytestmark = pytest.mark.mosquitto
OPS = Ed25519PrivateKey.generate()
TAMPER = 5
SHRED = '\n[privacy.incidents.enclosure_open]\nseverity = "critical"\nresponse = "shred_kek"\n'


def _config(tmp_path: Path, broker: MosquittoBroker, extra: str = "") -> Path:
    path = device_config(
        tmp_path, broker, operators={"ops": OPS}, cache_dir=None, recognition=False, extra=extra
    )
    path.write_text(path.read_text().replace("unlock_s = 1.0\n", f"unlock_s = 1.0\ntamper_line = {TAMPER}\n"))
    return path


@asynccontextmanager
async def _device(cfg: Path) -> AsyncIterator[Device]:
    async with Device(load_config(cfg), handle_signals=False) as dev:
        mqtt = dev.parts.mqtt
        assert mqtt is not None and mqtt.commands is not None
        async with asyncio.timeout(60):
            await mqtt.commands.wait_ready()
            await mqtt.link.wait_connected()
        await asyncio.sleep(0.3)  # the SUBSCRIBE reaches the broker
        yield dev
        dev.request_shutdown("test over")


def _incident(obs: Observer, kind: str, start: int = 0) -> Any:
    return obs.wait_for(
        lambda s: s.topic.endswith("event/incident") and s.json()["kind"] == kind, within=30, start=start
    )


@pytest.mark.asyncio
async def test_opened_enclosure_on_a_kiosk_shreds_the_kek_and_the_device_refuses_to_start(
    tmp_path: Path, mosquitto: MosquittoBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEK_ENV, fresh_kek())
    cfg = _config(tmp_path, mosquitto, SHRED)
    async with (
        observe(mosquitto, "facegate/v1/gate-1/#", client_id="outside-inc") as obs,
        _device(cfg) as dev,
    ):
        policy = dev.parts.policy
        assert policy is not None
        await grant_consent(policy, "emp-1")
        x = np.random.default_rng(3).standard_normal((1, 128)).astype(np.float32)
        await policy.enrol_subject("emp-1", x / np.linalg.norm(x), "sface-2021dec", actor="kiosk")
        gpio: Any = dev.parts.gpio
        gpio.drive_input(TAMPER, True)  # the enclosure is opened
        incident = await _incident(obs, "enclosure_open")
        body = incident.json()
        assert body["severity"] == "critical" and body["outcome"] == "kek_shredded", body
        assert body["response"] == "shred_kek" and body["count"] == 1 and len(body["incident_id"]) == 36
        security = await obs.wait_for(lambda s: s.topic.endswith("event/security"), within=30)
        assert security.json()["kind"] == "tamper"
        await obs.wait_for(
            lambda s: s.topic.endswith("event/privacy") and s.json()["kind"] == "teardown", within=30
        )
        keys = await policy.store.db.fetchall("SELECT COUNT(*) FROM vault.subject_keys")
        assert keys[0][0] == 0 and not await policy.is_enrolled("emp-1")
        rows = await policy.store.db.fetchall("SELECT incident_id, outcome FROM incidents")
        assert [(str(a), str(b)) for a, b in rows] == [(body["incident_id"], "kek_shredded")]
        assert first_error("event_incident", body) is None
        _assert_private(body, incident.payload)
    # Re-starting is refused until the device is re-initialised: the vault holds no KEK any more.
    loaded = load_config(cfg)
    with pytest.raises(KekSourceError, match="keys init"):
        async with Store.from_config(loaded.config.storage, clock=SystemClock(), register_kek=False):
            pass


@pytest.mark.asyncio
async def test_door_terminal_locks_down_and_hook_and_bus_overflow_are_incidents(
    tmp_path: Path, mosquitto: MosquittoBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEK_ENV, fresh_kek())
    cfg = _config(tmp_path, mosquitto)
    async with (
        observe(mosquitto, "facegate/v1/gate-1/#", client_id="outside-inc2") as obs,
        _device(cfg) as dev,
    ):
        gpio: Any = dev.parts.gpio
        gpio.drive_input(TAMPER, True)
        body = (await _incident(obs, "enclosure_open")).json()
        assert body["response"] == "lockdown" and body["outcome"] == "locked_down", body
        await obs.wait_for(
            lambda s: s.topic.endswith("event/door") and s.json()["kind"] == "lockdown", within=30
        )
        # The hook other subsystems (licence clock) call: twice, counted.
        for _ in range(2):
            report_incident(
                dev.bus, dev.clock, SecurityKind.CLOCK_ROLLBACK, "wall clock went back", source="licence"
            )
        second = await obs.wait_for(
            lambda s: (
                s.topic.endswith("event/incident")
                and s.json()["kind"] == "clock_rollback"
                and s.json()["count"] == 2
            ),
            within=30,
        )
        assert second.json()["severity"] == "warning" and second.json()["outcome"] == "notified"
        # A never-drop event lost by a full subscriber raises bus_overflow (once per episode).
        async with dev.bus.subscribe(SecurityEvent, name="stuck", maxsize=1) as _stuck:
            for _ in range(3):
                report_incident(dev.bus, dev.clock, SecurityKind.COMMAND_REJECTED, "bad sig", source="test")
            await _incident(obs, "bus_overflow")
        assert dev.parts.policy is not None
        rows = await dev.parts.policy.store.db.fetchall(
            "SELECT kind, COUNT(*) FROM incidents GROUP BY kind"
        )
        counts = {str(k): int(n) for k, n in rows}
        assert counts["enclosure_open"] == 1 and counts["clock_rollback"] == 2 and counts["bus_overflow"] == 1
    for m in obs.messages:
        if m.topic.endswith("event/incident"):
            assert first_error("event_incident", m.json()) is None, m.json()
