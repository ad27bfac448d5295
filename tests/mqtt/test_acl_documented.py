"""Issue 10.8 (+10.1, 10.7, 10.9): the ACL of docs/deployment.md, verbatim, in a real Mosquitto.

A full device (username = its id, HA discovery on), a fleet reader and an
operator run against it, under MQTT 5 and 3.1.1:

* the device publishes status, events and HA discovery (id with a '-') with
  nothing refused, and answers commands in its own reply subtree;
* the operator's ``facegate cmd`` (``--username ops.alice --password-file``)
  gets its reply; it cannot read events nor publish as a device;
* the fleet reader sees status and events, never commands (enrolment photos)
  or replies, and cannot publish as a device (no phantom devices).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiomqtt
import pytest
from facegate.handlers.reporting.homeassistant import HomeAssistantDiscovery
from facegate.runtime.app.cli.cmd_cmd import load_key
from facegate.runtime.app.cli.fleet_cmd import Fleet
from facegate.runtime.app.device import Device
from facegate.runtime.config import load_config
from facegate.runtime.mqtt import MqttLink
from facegate.runtime.mqtt.checked import CheckedClient
from facegate.runtime.mqtt.errors import MqttPublishRefused

from ..fixtures.acl import AclBroker, acl_broker, documented_acl
from .device_util import KEK_ENV, device_config, fresh_kek
from .test_cli_and_integrations import operator_key, run_cli
from .util import until

__all__ = ["operator_key"]  # fixture re-used

pytestmark = pytest.mark.mosquitto

FORGED = b'{"state":"online","forged":true}'
USERS = {"gate-1": "dev-pw", "fleet.reader": "fleet-pw", "ops.alice": "ops-pw"}


class Client:
    """An account's client that records what it receives."""

    def __init__(self, client: aiomqtt.Client) -> None:
        self.client = client
        self.got: list[tuple[str, bytes]] = []

    async def pump(self) -> None:
        with contextlib.suppress(aiomqtt.MqttError):
            async for m in self.client.messages:
                self.got.append((str(m.topic), m.payload if isinstance(m.payload, bytes) else b""))

    async def forge(self, topic: str, v5: bool) -> None:
        """Publish FORGED on ``topic``: under MQTT 5 the broker must say no (0x87); under
        3.1.1 it acknowledges anyway, so the readers' logs show whether it was routed."""
        refused = False
        try:
            await self.client.publish(topic, FORGED, qos=1)
        except MqttPublishRefused:
            refused = True
        assert refused or not v5, topic

    async def round_trip(self) -> None:
        """A SUBACK round trip: whatever the broker routed to this client before has arrived."""
        await self.client.subscribe("facegate/v1/+/licence", qos=1)


@contextlib.asynccontextmanager
async def account(broker: AclBroker, user: str, filters: list[str], v5: bool) -> AsyncIterator[Client]:
    proto = aiomqtt.ProtocolVersion.V5 if v5 else aiomqtt.ProtocolVersion.V311
    async with CheckedClient(
        broker.host, broker.port, username=user, password=USERS[user], identifier=f"t-{user}", protocol=proto
    ) as client:
        for f in filters:
            await client.subscribe(f, qos=1)
        c = Client(client)
        task = asyncio.create_task(c.pump(), name=f"test.{user}")
        try:
            yield c
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


@pytest.mark.asyncio
@pytest.mark.timeout(240)
@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
async def test_documented_acl_device_fleet_reader_and_operator(
    tmp_path: Path, operator_key: Path, monkeypatch: pytest.MonkeyPatch, protocol: str
) -> None:
    v5 = protocol == "5"
    broker = acl_broker(tmp_path, documented_acl(), USERS)
    try:
        monkeypatch.setenv(KEK_ENV, fresh_kek())
        (tmp_path / "dev.pw").write_text("dev-pw")
        (tmp_path / "ops.pw").write_text("ops-pw\n")
        cfg = device_config(
            tmp_path,
            broker,
            operators={"alice": load_key(operator_key)},
            cache_dir=None,
            recognition=False,
            extra="[homeassistant]\ndiscovery = true\nlock = true\n",
        )
        pw = tmp_path / "dev.pw"
        text = cfg.read_text().replace(
            'protocol = "5"\n',
            f'protocol = "{protocol}"\nusername = "gate-1"\npassword = {{ file = "{pw}" }}\n',
        )
        cfg.write_text(text)
        fleet_filters = [
            *Fleet("facegate/v1").filters(),
            "facegate/v1/+/event/#",
            "facegate/v1/+/cmd/#",
            "facegate/v1/+/reply/#",
        ]
        async with (
            account(broker, "fleet.reader", fleet_filters, v5) as fleet,
            account(broker, "ops.alice", ["facegate/v1/+/event/#", "facegate/v1/+/status"], v5) as ops,
            Device(load_config(cfg), handle_signals=False) as dev,
        ):
            mqtt = dev.parts.mqtt
            assert mqtt is not None and mqtt.homeassistant is not None and mqtt.commands is not None
            link: MqttLink = mqtt.link
            ha: HomeAssistantDiscovery = mqtt.homeassistant
            await asyncio.wait_for(mqtt.commands.wait_ready(), 30)
            # The device's status reaches the fleet reader; HA discovery for 'gate-1' passes the ACL.
            await until(lambda: any(t == "facegate/v1/gate-1/status" for t, _ in fleet.got), within=30)
            await until(lambda: ha.published_for >= 1, within=30)
            # The operator's tool, with the documented account, gets the device's reply.
            code, out, err = await run_cli(
                "cmd", "open", "--key", str(operator_key), "--device", "gate-1", "--protocol", protocol,
                "--broker", f"{broker.host}:{broker.port}", "--username", "ops.alice",
                "--password-file", str(tmp_path / "ops.pw"),
            )  # fmt: skip
            assert code == 0, (out, err)
            assert json.loads(out)["ok"] is True
            # ... and the door event reaches the fleet reader.
            await until(lambda: any(t == "facegate/v1/gate-1/event/door" for t, _ in fleet.got), within=30)
            # Nobody but the device publishes under a device id; no phantom devices.
            await fleet.forge("facegate/v1/gate-1/status", v5)
            await fleet.forge("facegate/v1/phantom-1/event/access", v5)
            await ops.forge("facegate/v1/gate-1/event/access", v5)
            await ops.forge("facegate/v1/phantom-2/status", v5)
            await ops.round_trip()
            await fleet.round_trip()
            assert not [t for t, body in fleet.got if body == FORGED], fleet.got
            # The fleet reader never sees commands (enrolment photos) nor replies; the operator no events.
            assert not [t for t, _ in fleet.got if "/cmd/" in t or "/reply" in t], fleet.got
            assert not [t for t, _ in fleet.got if "phantom" in t], fleet.got
            # The only access events under gate-1 are the device's own (main: a remote open is
            # published as an access decision with reason remote_open), never the operator's forgery.
            access = [b for t, b in fleet.got if t.startswith("facegate/v1/gate-1/event/access")]
            assert all(b != FORGED and json.loads(b).get("reason") == "remote_open" for b in access), access
            assert not [t for t, _ in ops.got if "/event/" in t or "/status" in t], ops.got
            assert link.refusals.refused == 0, link.health()
    finally:
        broker.close()
