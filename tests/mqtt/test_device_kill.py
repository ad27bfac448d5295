"""A device process killed with SIGKILL mid-publish, then restarted: no committed event is lost.

The device is a real ``facegate run -c`` subprocess with an encrypted store.
Its events come through the real path (bus -> DurableEvents -> outbox ->
broker): a flood of malformed commands raises one ``SecurityEvent(command_rejected)``
each and signed ``open`` commands add door events. An outside consumer with a
persistent session counts event ids. After the kill the sqlite outbox is read
directly: every event id it holds must eventually reach the consumer once the
device runs again.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiomqtt
import pytest
import pytest_asyncio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ..fixtures.brokers import MosquittoBroker
from .device_util import KEK_ENV, device_config, fresh_kek, signed
from .durable_util import PersistentSubscriber, running

pytestmark = pytest.mark.mosquitto
ALICE = Ed25519PrivateKey.generate()
BASE = "facegate/v1/gate-1"


class DeviceProcess:
    def __init__(self, config: Path, env: dict[str, str], log: Path) -> None:
        self.config, self.env, self.log = config, env, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        out = self.log.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "facegate.runtime.app.cli", "run", "-c", str(self.config)],
            env=self.env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        out.close()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest_asyncio.fixture
async def device(tmp_path: Path, mosquitto: MosquittoBroker) -> AsyncIterator[DeviceProcess]:
    config = device_config(tmp_path, mosquitto, operators={"alice": ALICE}, cache_dir=None, recognition=False)
    env = dict(os.environ) | {KEK_ENV: fresh_kek()}
    proc = DeviceProcess(config, env, tmp_path / "device.log")
    try:
        yield proc
    finally:
        await asyncio.to_thread(proc.stop)


async def wait_commands_ready(client: aiomqtt.Client, within: float = 60.0) -> None:
    """Ping until the device answers (its command subscription is live)."""
    await client.subscribe(f"{BASE}/reply", qos=1)
    async with asyncio.timeout(within):
        while True:
            ping = signed("ping", {}, ALICE, "alice")
            await client.publish(f"{BASE}/cmd/ping", ping, qos=1)
            try:
                async with asyncio.timeout(0.5):
                    async for m in client.messages:
                        assert isinstance(m.payload, bytes)
                        if json.loads(m.payload).get("verb") == "ping":
                            return
            except TimeoutError:
                continue


def committed_ids(db: Path) -> tuple[list[str], int]:
    """Event ids of every event row in the outbox (read after the kill) and the undelivered count."""
    con = sqlite3.connect(db)
    try:
        rows = con.execute(
            "SELECT event_id, payload, delivered_at FROM outbox WHERE topic LIKE '%event/%'"
        ).fetchall()
    finally:
        con.close()
    # Policy receipts (retention sweeps) are stored without an event_id; the link
    # publishes them with the row's id.
    ids = [json.loads(bytes(p)).get("event_id", row_id) for row_id, p, _ in rows]
    return ids, sum(1 for *_, d in rows if d is None)


@pytest.mark.asyncio
async def test_device_sigkilled_mid_publish_loses_no_committed_event(
    device: DeviceProcess, mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    sub = PersistentSubscriber(mosquitto, f"{BASE}/event/#", client_id="kill-consumer")
    async with running(sub), aiomqtt.Client(mosquitto.host, mosquitto.port, identifier="flood") as client:
        device.start()
        await wait_commands_ready(client)

        async def flood() -> None:
            n = 0
            while True:
                n += 1
                if n % 10 == 0:
                    await client.publish(f"{BASE}/cmd/open", signed("open", {}, ALICE, "alice"), qos=1)
                else:
                    await client.publish(f"{BASE}/cmd/open", b"{not json", qos=0)
                if n % 5 == 0:
                    await asyncio.sleep(0.01)

        async with asyncio.TaskGroup() as tg:
            flooding = tg.create_task(flood(), name="test.flood")
            async with asyncio.timeout(60):
                while len(set(sub.ids)) < 60:  # noqa: ASYNC110  # events are flowing
                    await asyncio.sleep(0.01)
            # Mid-publish: freeze the broker so the device's next publishes stay
            # unacknowledged on the wire, then kill the device and let the broker go on
            # (it may still forward what the dead device had written: duplicates later).
            # The door relocks unlock_s (1 s) after the last signed open: that event is
            # committed while the broker is frozen, so at least one row is unacknowledged.
            mosquitto.pause()
            await asyncio.sleep(1.5)
            await asyncio.to_thread(device.kill)
            mosquitto.resume()
            flooding.cancel()
        seen_at_kill = set(sub.ids)

        ids, undelivered = committed_ids(tmp_path / "device.db")
        assert len(ids) == len(set(ids)) and len(ids) >= 60
        unseen = set(ids) - seen_at_kill
        print(f"committed {len(ids)}, undelivered rows {undelivered}, not yet seen at kill {len(unseen)}")
        assert undelivered > 0, "the kill should find committed, unacknowledged rows"

        device.start()  # same store, same KEK: the outbox is resent
        try:
            await sub.wait_unique(len(set(ids) | seen_at_kill), within=60)
        except TimeoutError:
            missing = set(ids) - set(sub.ids)
            pytest.fail(
                f"{len(missing)} committed events never arrived after the restart: {sorted(missing)[:5]}"
            )
    assert set(ids) <= set(sub.ids)
    # Nothing reached the consumer that the outbox had not committed first.
    assert seen_at_kill <= set(ids)
