"""The lazy CLI: the command table matches the modules, and --help/version stay light."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import pytest
from facegate.runtime.app.cli import build_parser, lazy_parser, main
from facegate.runtime.app.cli._commands import COMMANDS

HEAVY = (
    "cv2", "onnxruntime", "onnx", "numpy", "amqtt", "aiomqtt", "paho", "structlog", "rich", "cryptography",
)


def _subcommands(parser: argparse.ArgumentParser) -> argparse._SubParsersAction:
    (sub,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub


def _registered() -> dict[str, str | None]:
    return {action.dest: action.help for action in _subcommands(build_parser())._choices_actions}


def test_command_table_matches_what_the_modules_register() -> None:
    """A command added to a module but not to _commands.COMMANDS (or a stale help line) fails here."""
    registered = _registered()
    assert {name: cmd.help for name, cmd in COMMANDS.items()} == registered


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_the_lazy_parser_registers_the_real_command(name: str) -> None:
    ours = _subcommands(lazy_parser([name])).choices[name].format_help()
    assert ours == _subcommands(build_parser()).choices[name].format_help()


def _modules_after(argv: list[str]) -> tuple[int, list[str], str]:
    code = (
        "import contextlib, io, json, sys\n"
        "from facegate.runtime.app.cli import main\n"
        "out = io.StringIO()\n"
        "with contextlib.redirect_stdout(out):\n"
        "    try:\n"
        f"        rc = main({argv!r})\n"
        "    except SystemExit as e:\n"
        "        rc = e.code\n"
        "print(json.dumps([rc, sorted(sys.modules), out.getvalue()]))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    rc, modules, out = json.loads(proc.stdout)
    return rc, modules, out


@pytest.mark.parametrize("argv", [["--help"], ["version"], ["version", "--help"], ["--version"]])
def test_help_and_version_import_no_heavy_dependency(argv: list[str]) -> None:
    rc, modules, out = _modules_after(argv)
    assert rc in (0, None)
    assert "facegate" in out
    loaded = sorted({m.split(".")[0] for m in modules} & set(HEAVY))
    assert loaded == [], f"`facegate {' '.join(argv)}` imported {loaded}"


def test_running_a_command_imports_its_module(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "example"]) == 0
    assert "[device]" in capsys.readouterr().out
