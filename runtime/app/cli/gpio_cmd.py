"""``facegate gpio safe``: drive the lock relay to its safe state (systemd ExecStopPost=)."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any


def register(sub: Any) -> None:
    """Add the ``gpio`` command group."""
    p = sub.add_parser("gpio", help="GPIO helpers (safe state after the service stopped)")
    cmds = p.add_subparsers(dest="gpio_command", metavar="ACTION", required=True)
    safe = cmds.add_parser(
        "safe",
        help="drive the relay line de-energised (its safe state) and release it; "
        "reads only the [gpio] section",
    )
    safe.add_argument("-c", "--config", type=Path, required=True, help="firmware config TOML")
    safe.set_defaults(handler=_safe)


def _safe(args: argparse.Namespace) -> int:
    # Imported on use: the CLI must not import drivers at start-up.
    from ....drivers.gpio.safe import drive_safe, load_gpio_section  # noqa: PLC0415  # see above

    section = load_gpio_section(args.config)
    if asyncio.run(drive_safe(section)):
        print(f"gpio: relay line {section.relay_line} driven to its safe state (de-energised)")
    else:
        print("gpio: relay = 'none' (gate-controller mode): no relay to drive")
    return 0
