"""``facegate run --config FILE``: run the device until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from ...config import LoadedConfig, load_config
from ...errors import ShutdownTimeoutError
from ...logs import configure_logging
from ..device import Device

Body = Callable[[Device], Awaitable[None]]


def register(sub: Any) -> None:
    """Add the ``run`` command."""
    p = sub.add_parser(
        "run",
        help="run the device from a firmware config file",
        description="Run the device until SIGINT/SIGTERM. Exit codes: 0 clean stop, "
        "1 runtime failure or forced shutdown, 2 bad usage or config.",
    )
    p.add_argument("-c", "--config", type=Path, required=True, help="firmware config TOML file")
    p.add_argument(
        "--repair",
        action="store_true",
        help="start even though the store failed its integrity check: rebuild what can be "
        "read (raises a security event; nothing readable is dropped)",
    )
    p.set_defaults(handler=_run)


def setup_logging(loaded: LoadedConfig) -> None:
    """Configure structlog from the config's ``[logging]`` section."""
    cfg = loaded.config
    configure_logging(device_id=cfg.device.id, level=cfg.logging.level, fmt=cfg.logging.format)


async def serve(
    loaded: LoadedConfig, *, seconds: float | None = None, body: Body | None = None, repair: bool = False
) -> int:
    """Run a Device until a signal (or ``seconds``); return the exit code.

    ``body`` runs beside the device (the demo uses it) and keeps running while
    the device shuts down, so it can observe the clean ``offline``; it is
    cancelled once the device has stopped.
    """
    device = Device(loaded, repair=repair)
    extra: asyncio.Task[None] | None = None
    try:
        async with device:
            if body is not None:
                extra = asyncio.create_task(_as_coro(body(device)), name="run.body")
            try:
                await asyncio.wait_for(device.wait_shutdown(), seconds)
            except TimeoutError:
                device.request_shutdown("timer")
    except ShutdownTimeoutError:
        return 1
    finally:
        if extra is not None:
            extra.cancel()
            await asyncio.gather(extra, return_exceptions=True)
    return 0


async def _as_coro(awaitable: Awaitable[None]) -> None:
    await awaitable


def _run(args: argparse.Namespace) -> int:
    loaded = load_config(args.config)
    setup_logging(loaded)
    return asyncio.run(serve(loaded, repair=args.repair))
