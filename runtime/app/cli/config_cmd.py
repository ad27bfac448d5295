"""``facegate config check FILE`` and ``facegate config example``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ...config import example_toml, load_config, render_effective


def register(sub: Any) -> None:
    """Add the ``config`` command group."""
    p = sub.add_parser("config", help="validate or document firmware config files")
    cmds = p.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    check = cmds.add_parser(
        "check", help="validate FILE and print the effective config with secrets masked"
    )
    check.add_argument("file", type=Path, help="firmware config TOML file")
    check.set_defaults(handler=_check)
    ex = cmds.add_parser("example", help="print a config with every option documented")
    ex.set_defaults(handler=_example)


def _check(args: argparse.Namespace) -> int:
    loaded = load_config(args.file)
    print(f"# {args.file}: valid (digest {loaded.digest})")
    print(render_effective(loaded.config))
    return 0


def _example(_: argparse.Namespace) -> int:
    sys.stdout.write(example_toml())
    return 0
