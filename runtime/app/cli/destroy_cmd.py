"""``facegate destroy``: unregister and destroy the device's biometric data.

Stops recognition (the systemd unit, when it runs), crypto-shreds every
subject by deleting all data keys and the KEK check value from the key
vault, deletes the data, destroys a key file KEK, and leaves a final audit
row and TEARDOWN event. Asks for confirmation unless ``--yes``.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from ....policy import Policy, destroy
from ....storage import Store, kek_source_from_config
from ...clock import SystemClock
from ...config import load_config


def register(sub: Any) -> None:
    """Add the ``destroy`` command."""
    p = sub.add_parser("destroy", help="crypto-shred and delete every subject, the keys and the KEK")
    p.add_argument("-c", "--config", type=Path, required=True, help="firmware config TOML")
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    p.add_argument("--actor", help="operator id recorded in the audit log (default cli:<user>)")
    p.add_argument(
        "--unit",
        default="facegate.service",
        help="systemd unit to stop first so recognition ends (empty: do not stop anything)",
    )
    p.set_defaults(handler=_destroy)


def _stop_unit(unit: str) -> None:
    """Stop the running device, if systemd runs it here (blocking; called via a thread)."""
    systemctl = shutil.which("systemctl")
    if not unit or systemctl is None:
        return
    active = subprocess.run([systemctl, "is-active", "--quiet", unit], check=False)  # noqa: S603  # fixed argv
    if active.returncode == 0:
        print(f"stopping {unit} ...")
        subprocess.run([systemctl, "stop", unit], check=True)  # noqa: S603  # fixed argv


def _destroy(args: argparse.Namespace) -> int:
    loaded = load_config(args.config)
    cfg = loaded.config
    if not args.yes:
        if not sys.stdin.isatty():
            print("facegate: error: not a terminal; pass --yes to confirm", file=sys.stderr)
            return 2
        answer = input(
            f"Destroy ALL biometric data of device {cfg.device.id} ({cfg.storage.path})? "
            "This cannot be undone. Type the device id to confirm: "
        )
        if answer.strip() != cfg.device.id:
            print("not confirmed; nothing changed", file=sys.stderr)
            return 2
    actor = args.actor or f"cli:{getpass.getuser()}"

    async def main() -> int:
        clock = SystemClock()
        kek = kek_source_from_config(cfg.storage)
        async with Store.from_config(cfg.storage, clock=clock, register_kek=False) as store:
            policy = await Policy(store, cfg.privacy, clock=clock, device_id=cfg.device.id).open()
            report = await destroy(
                policy,
                actor=actor,
                kek=kek,
                stop_recognition=lambda: asyncio.to_thread(_stop_unit, args.unit),
            )
        print(
            f"destroyed: {report.subjects} subject(s), {report.templates} template(s), "
            f"{report.keys_shredded} data key(s) shredded; {report.kek_note}"
        )
        return 0

    return asyncio.run(main())
