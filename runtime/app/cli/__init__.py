"""The ``facegate`` command line.

Each module in this package that defines ``register(subparsers)`` adds its
own sub-commands; :func:`build_parser` discovers them all. :func:`main` is
lazy: it reads the light table in :mod:`._commands` and imports only the
module of the command being run, so ``facegate --help`` and ``facegate
version`` never load cv2, onnxruntime or the MQTT stack. Exit codes: 0
success, 2 bad usage or config, 1 runtime failure.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence
from typing import Any

from ... import __version__
from ...errors import FacegateError
from ._commands import COMMANDS

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2


def _top_parser() -> tuple[argparse.ArgumentParser, Any]:
    parser = argparse.ArgumentParser(
        prog="facegate",
        description="facegate: face recognition runtime for gated entry devices.",
    )
    parser.add_argument("--version", action="version", version=f"facegate {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    return parser, sub


def _register(sub: Any, module_name: str) -> None:
    module = importlib.import_module(f"{__name__}.{module_name}")
    register = getattr(module, "register", None)
    if callable(register):
        register(sub)


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser, with every discovered sub-command (imports them all)."""
    parser, sub = _top_parser()
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if not info.name.startswith("_"):
            _register(sub, info.name)
    return parser


def lazy_parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    """A parser that imports only the module of the command named in ``argv``.

    The other commands get placeholder entries with their help line from
    :data:`._commands.COMMANDS`, so the top-level ``--help`` lists them all.
    """
    parser, sub = _top_parser()
    chosen = next((a for a in argv if not a.startswith("-")), None)
    if chosen in COMMANDS:
        _register(sub, COMMANDS[chosen].module)
    for name, command in sorted(COMMANDS.items()):
        if name not in sub.choices:
            sub.add_parser(name, help=command.help)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``facegate`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = lazy_parser(argv)
    args = parser.parse_args(argv)
    try:
        code = args.handler(args)
    except FacegateError as exc:
        if _is_config_error(exc):
            print(f"facegate: config error: {exc}", file=sys.stderr)
            return EXIT_USAGE
        print(f"facegate: error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return 130
    return int(code)


def _is_config_error(exc: BaseException) -> bool:
    # Imported here: the config package pulls in structlog, too heavy for --help and version.
    from ...config import ConfigError  # noqa: PLC0415  # lazy on purpose (see above)

    return isinstance(exc, ConfigError)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
