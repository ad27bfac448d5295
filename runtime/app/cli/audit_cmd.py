"""``facegate audit verify``: walk the audit hash chain and name the first broken row."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ....storage import verify_chain
from ...config import load_config


def register(sub: Any) -> None:
    """Add the ``audit`` command group."""
    p = sub.add_parser("audit", help="inspect the tamper-evident audit log")
    cmds = p.add_subparsers(dest="audit_command", metavar="ACTION", required=True)
    ver = cmds.add_parser("verify", help="verify the hash chain; exit 1 naming the first bad row")
    src = ver.add_mutually_exclusive_group(required=True)
    src.add_argument("-c", "--config", type=Path, help="firmware config TOML")
    src.add_argument("--db", type=Path, help="database file (no key needed)")
    ver.set_defaults(handler=_verify)


def _verify(args: argparse.Namespace) -> int:
    path = args.db if args.db is not None else load_config(args.config).config.storage.path
    if not Path(path).is_file():
        print(f"facegate: error: no database at {path}")
        return 1
    result = verify_chain(path)
    if result.ok:
        print(f"audit log intact: {result.rows} row(s)")
        return 0
    print(f"audit log BROKEN at row {result.first_broken}: {result.reason}")
    return 1
