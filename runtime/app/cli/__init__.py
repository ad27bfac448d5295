"""The ``facegate`` command line.

Each module in this package that defines ``register(subparsers)`` adds its
own sub-commands; :func:`main` discovers them, so adding a command never
edits a central dispatcher. Exit codes: 0 success, 2 bad usage or config,
1 runtime failure.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence

from ... import __version__
from ...config import ConfigError
from ...errors import FacegateError

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser, with every discovered sub-command."""
    parser = argparse.ArgumentParser(
        prog="facegate",
        description="facegate: face recognition runtime for gated entry devices.",
    )
    parser.add_argument("--version", action="version", version=f"facegate {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        register = getattr(module, "register", None)
        if callable(register):
            register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``facegate`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code = args.handler(args)
    except ConfigError as exc:
        print(f"facegate: config error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except FacegateError as exc:
        print(f"facegate: error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return 130
    return int(code)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
