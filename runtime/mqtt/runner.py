"""A minimal device process for MQTT presence: ``python -m facegate.runtime.mqtt.runner -c FILE``.

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

from ..bus import EventBus
from ..clock import SystemClock
from ..config import ConfigError, load_config
from ..logs import configure_logging
from .embedded import EmbeddedBroker
from .errors import MqttLinkError
from .link import MqttLink


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
    parser = argparse.ArgumentParser(prog="python -m facegate.runtime.mqtt.runner")
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
