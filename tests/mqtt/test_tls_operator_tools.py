"""Issue 10.7: ``facegate cmd`` and ``facegate fleet watch`` against a TLS-only Mosquitto.

The broker's only listener is TLS (CA and server certificate generated here
with ``cryptography``); a device link (TLS, CA-verified) answers ``ping`` and
publishes its status. The real CLI, in a subprocess, reaches it with
``--ca-file`` and with the ``FACEGATE_MQTT_*`` environment, and fails cleanly
(exit 1, no traceback) without the CA.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest
from facegate.handlers.commands import build_command_service
from facegate.runtime.bus import EventBus
from facegate.runtime.clock import SystemClock
from facegate.runtime.config.link import CommandsSection
from facegate.runtime.mqtt import MqttLink

from .test_tls import _tls_mosquitto
from .util import load

pytestmark = pytest.mark.mosquitto
CLI = [sys.executable, "-m", "facegate.runtime.app.cli"]


async def run_cli(
    *args: str, env: dict[str, str] | None = None, within: float = 60.0
) -> tuple[int, str, str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("FACEGATE_MQTT_")}
    full["COLUMNS"] = "200"
    full.update(env or {})
    proc = await asyncio.create_subprocess_exec(
        *CLI, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=full
    )
    out, err = await asyncio.wait_for(proc.communicate(), within)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.mark.asyncio
@pytest.mark.timeout(240)
async def test_cmd_and_fleet_watch_over_a_tls_only_listener(tmp_path: Path) -> None:
    broker, ca = await asyncio.to_thread(_tls_mosquitto, tmp_path, ["localhost", "127.0.0.1"])
    address = f"localhost:{broker.port}"
    clock, bus = SystemClock(), EventBus()
    try:
        cfg = load(tmp_path, broker, host="localhost", tls={"ca_file": str(ca)}, protocol="5")
        async with MqttLink.from_config(cfg, clock=clock, bus=bus) as link, asyncio.TaskGroup() as tg:
            svc = await build_command_service(
                CommandsSection(), link, bus=bus, clock=clock
            )
            task = tg.create_task(svc.run(), name="test.commands")
            await asyncio.wait_for(link.wait_connected(), 15)
            await asyncio.wait_for(svc.wait_ready(), 10)
            await asyncio.sleep(0.3)  # the SUBSCRIBE reaches the broker
            try:
                # Options.
                code, out, err = await run_cli("cmd", "ping", "--broker", address, "--ca-file", str(ca))
                assert code == 0, err
                assert json.loads(out)["result"]["pong"] is True
                # Environment only (both protocols).
                env = {"FACEGATE_MQTT_BROKER": address, "FACEGATE_MQTT_CA_FILE": str(ca)}
                code, out, err = await run_cli("cmd", "ping", "--protocol", "3.1.1", env=env)
                assert code == 0, err
                assert json.loads(out)["result"]["pong"] is True
                # Without the CA the TLS-only listener cannot be reached: a clear error, no traceback.
                code, out, err = await run_cli("cmd", "ping", "--broker", address, "--timeout", "5")
                assert code == 1 and out == "" and "Traceback" not in err, err
                # fleet watch, with the option and with the environment.
                for args, extra in (
                    (["--broker", address, "--ca-file", str(ca)], None),
                    ([], env),
                ):
                    code, out, err = await run_cli("fleet", "watch", *args, "--seconds", "3", env=extra)
                    assert code == 0, err
                    assert "gate-1" in out and "online" in out, out
            finally:
                task.cancel()
    finally:
        await asyncio.to_thread(broker.close)
