"""Last Will: a device process killed with SIGKILL is reported offline by the broker.

The device runs in a subprocess (``facegate run`` when the CLI has it, else the
MQTT runner module). Mosquitto's side is watched by ``mosquitto_sub``, a client
nobody here wrote; the embedded broker's side by an aiomqtt observer.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path

import pytest
from facegate.runtime.app.cli import build_parser

from ..fixtures.brokers import BrokerHandle, MosquittoBroker, mosquitto_client
from .util import observe, status_is, write_config

KEEPALIVE = 5
WILL_DEADLINE = 1.5 * KEEPALIVE + 5


def device_command(config: Path) -> list[str]:
    """``facegate run --config FILE`` if the CLI provides it, else the MQTT runner."""
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    if "run" in (sub.choices or {}):
        return [sys.executable, "-m", "facegate.runtime.app.cli", "run", "--config", str(config)]
    return [sys.executable, str(Path(__file__).with_name("presence_runner.py")), "--config", str(config)]


async def _start_device(config: Path, tmp_path: Path) -> asyncio.subprocess.Process:
    log = (tmp_path / "device.log").open("wb")
    try:
        return await asyncio.create_subprocess_exec(
            *device_command(config),
            stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    finally:
        log.close()


async def _kill(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.send_signal(signal.SIGKILL)
    await proc.wait()


class MosquittoSub:
    """``mosquitto_sub -v`` streaming the status topic, parsed line by line."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    async def next_status(self, within: float) -> dict[str, object]:
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), within)
        assert line, "mosquitto_sub ended"
        topic, _, payload = line.decode().strip().partition(" ")
        assert topic == "facegate/v1/gate-1/status"
        body = json.loads(payload)
        assert isinstance(body, dict)
        return body


@pytest.mark.mosquitto
@pytest.mark.asyncio
@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
async def test_sigkill_device_offline_through_will_seen_by_mosquitto_sub(
    mosquitto: MosquittoBroker, tmp_path: Path, protocol: str
) -> None:
    config = write_config(tmp_path, mosquitto, protocol=protocol, keepalive=KEEPALIVE)
    exe = mosquitto_client("mosquitto_sub")
    assert exe is not None
    sub_proc = await asyncio.create_subprocess_exec(
        exe, "-h", mosquitto.host, "-p", str(mosquitto.port), "-q", "1",
        "-V", "mqttv5" if protocol == "5" else "mqttv311",
        "-t", "facegate/v1/gate-1/status", "-v",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )
    device = await _start_device(config, tmp_path)
    try:
        sub = MosquittoSub(sub_proc)
        body = await sub.next_status(within=30)
        assert body["state"] == "online", (tmp_path / "device.log").read_text()
        killed_at = time.monotonic()
        await _kill(device)
        body = await sub.next_status(within=WILL_DEADLINE + 2)
        elapsed = time.monotonic() - killed_at
        assert body["state"] == "offline"
        assert body["reason"] == "connection_lost", "this must come from the will"
        assert elapsed <= WILL_DEADLINE
    finally:
        await _kill(device)
        await _kill(sub_proc)


@pytest.mark.asyncio
async def test_sigkill_device_offline_through_will_embedded_broker(
    embedded_broker: BrokerHandle, tmp_path: Path
) -> None:
    config = write_config(tmp_path, embedded_broker, keepalive=KEEPALIVE)
    async with observe(embedded_broker) as obs:
        device = await _start_device(config, tmp_path)
        try:
            await obs.wait_for(status_is("online"), within=30)
            mark = len(obs.messages)
            killed_at = time.monotonic()
            await _kill(device)
            offline = await obs.wait_for(status_is("offline"), within=WILL_DEADLINE + 2, start=mark)
            assert time.monotonic() - killed_at <= WILL_DEADLINE
            assert offline.json()["reason"] == "connection_lost"
        finally:
            await _kill(device)
    async with observe(embedded_broker, client_id="late") as late:
        retained = await late.wait_for(status_is("offline"))
    assert retained.retain
