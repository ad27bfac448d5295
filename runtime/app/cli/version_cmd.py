"""``facegate version``."""

from __future__ import annotations

import argparse
import platform
from typing import Any

from ... import __version__


def register(sub: Any) -> None:
    """Add the ``version`` command."""
    p = sub.add_parser("version", help="print the software version")
    p.set_defaults(handler=_version)


def _version(_: argparse.Namespace) -> int:
    print(f"facegate {__version__} (Python {platform.python_version()})")
    return 0
