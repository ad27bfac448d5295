"""A minimal device process for MQTT presence (a test harness): ``python presence_runner.py -c FILE``.

Runs the embedded broker (when configured) and the :class:`MqttLink` with an
uptime-only telemetry snapshot until SIGINT/SIGTERM, then shuts down cleanly
(publishing ``offline``). Tests use it to kill a real device process with
SIGKILL; the full device is ``facegate run``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Sequence

from facegate.runtime.bus import EventBus
from facegate.runtime.clock import SystemClock
from facegate.runtime.config import ConfigError, load_config
from facegate.runtime.logs import configure_logging
from facegate.runtime.mqtt import EmbeddedBroker, MqttLink
from facegate.runtime.mqtt.errors import MqttLinkError


async def _serve(config_path: str) -> None:
    loaded = load_config(config_path)
    cfg = loaded.config
    configure_logging(device_id=cfg.device.id, level=cfg.logging.level, fmt=cfg.logging.format)
    clock = SystemClock()
    started = clock.monotonic()
    link = MqttLink.from_config(
        loaded,
        clock=clock,
        bus=EventBus(),
        telemetry=lambda: {"uptime_s": round(clock.monotonic() - started, 3)},
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with contextlib.AsyncExitStack() as stack:
        if cfg.mqtt.broker == "embedded":
            await stack.enter_async_context(EmbeddedBroker(cfg.mqtt.host, cfg.mqtt.port))
        await stack.enter_async_context(link)
        await stop.wait()


def main(argv: Sequence[str] | None = None) -> int:
    """Exit codes: 0 after a signal, 2 for a config error, 1 for an MQTT setup error."""
    parser = argparse.ArgumentParser(prog="presence_runner.py")
    parser.add_argument("-c", "--config", required=True, help="firmware config TOML file")
    args = parser.parse_args(argv)
    try:
        asyncio.run(_serve(args.config))
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    except MqttLinkError as exc:
        print(f"mqtt error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
