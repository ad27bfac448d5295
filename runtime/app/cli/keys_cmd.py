"""``facegate keys init|rotate|check``: the device key-encryption key (KEK)."""

from __future__ import annotations

import argparse
import asyncio
import os
from pathlib import Path
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

from ....policy.device_keys import rewrap_secrets
from ....storage import Store, init_kek, kek_source_from_config, rotate_kek
from ...config import load_config


def register(sub: Any) -> None:
    """Add the ``keys`` command group."""
    p = sub.add_parser("keys", help="create, check or rotate the storage key-encryption key")
    cmds = p.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    init = cmds.add_parser("init", help="create the KEK and register it in the database")
    init.add_argument("-c", "--config", type=Path, required=True, help="firmware config TOML")
    init.add_argument("--out", type=Path, help="where to write the new key (env/credential sources)")
    init.set_defaults(handler=_init)
    rot = cmds.add_parser(
        "rotate", help="re-wrap every data key under a new KEK (crash-safe; rerun to finish)"
    )
    rot.add_argument("-c", "--config", type=Path, required=True, help="firmware config TOML")
    rot.add_argument("--new-key-file", type=Path, help="new KEK file (env/credential sources)")
    rot.add_argument("--new-passphrase-env", metavar="VAR", help="variable holding the new passphrase")
    rot.add_argument("--batch", type=int, default=256, help="subjects per transaction")
    rot.add_argument("--no-progress", action="store_true", help="no progress bar")
    rot.set_defaults(handler=_rotate)
    chk = cmds.add_parser("check", help="verify the configured KEK opens the database")
    chk.add_argument("-c", "--config", type=Path, required=True, help="firmware config TOML")
    chk.set_defaults(handler=_check)


def _init(args: argparse.Namespace) -> int:
    section = load_config(args.config).config.storage
    source = kek_source_from_config(section)
    kid = asyncio.run(init_kek(section.path, source, key_out=args.out))
    print(f"KEK created ({source.describe()}), key id {kid[:8]}")
    if args.out is not None:
        print(f"install {args.out} as the {source.describe()} and delete the file")
    return 0


def _rotate(args: argparse.Namespace) -> int:
    section = load_config(args.config).config.storage
    source = kek_source_from_config(section)
    new_pass = os.environ.get(args.new_passphrase_env, "") if args.new_passphrase_env else None
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        disable=args.no_progress,
    ) as bar:
        task = bar.add_task("re-wrapping data keys", total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        report = asyncio.run(
            rotate_kek(
                section.path,
                source,
                new_key_file=args.new_key_file,
                new_passphrase=new_pass,
                batch=max(1, args.batch),
                progress=progress,
                rewrap_extra=(rewrap_secrets,),
            )
        )
    print(f"rotated KEK {report.old_kek_id[:8]} -> {report.new_kek_id[:8]}: {report.total} subject key(s)")
    if source.kind.value != "file":
        print(f"now install the new key as the {source.describe()} before the next restart")
    return 0


def _check(args: argparse.Namespace) -> int:
    section = load_config(args.config).config.storage

    async def run() -> str:
        async with Store.from_config(section, register_kek=False) as store:
            return next(iter(store.keys.held_ids))

    kid = asyncio.run(run())
    print(f"KEK ok (key id {kid[:8]})")
    return 0
