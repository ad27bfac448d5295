"""The layers contract (.importlinter) covers every floor module and fails on an upward import."""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _contract(name: str) -> configparser.SectionProxy:
    parser = configparser.ConfigParser()
    parser.read(REPO / ".importlinter")
    return parser[f"importlinter:contract:{name}"]


def _floor_modules() -> set[str]:
    found = set()
    for path in (REPO / "runtime").iterdir():
        if path.name in {"app", "testing", "__init__.py", "__pycache__"}:  # testing: facegate.testing
            continue
        if path.suffix == ".py" or (path / "__init__.py").is_file():
            found.add(f"facegate.runtime.{path.stem}")
    return found


def test_every_floor_module_is_in_the_floor_contract() -> None:
    listed = set(_contract("floor")["source_modules"].split())
    assert _floor_modules() - listed == set(), "add new runtime/ floor modules to .importlinter"
    bottom = _contract("layers")["layers"].strip().splitlines()[-1]
    assert {m.strip() for m in bottom.split(":")} == listed


@pytest.mark.timeout(300)
def test_an_upward_import_breaks_the_contract(tmp_path: Path) -> None:
    """A copy of the tree with a floor module importing the roof fails scripts/layers."""
    copy = tmp_path / "repo"
    for name in ("runtime", "handlers", "drivers", "policy", "storage", "scripts"):
        shutil.copytree(REPO / name, copy / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / ".importlinter", copy / ".importlinter")
    (copy / ".venv").symlink_to(REPO / ".venv")
    ok = subprocess.run([str(copy / "scripts" / "layers")], capture_output=True, text=True, check=False)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    bus = copy / "runtime" / "bus.py"
    bus.write_text(bus.read_text() + "\nfrom .app import root as _root  # an upward import\n")
    broken = subprocess.run([str(copy / "scripts" / "layers")], capture_output=True, text=True, check=False)
    assert broken.returncode != 0
    assert "facegate.runtime.bus -> facegate.runtime.app" in broken.stdout


def _purity(root: Path) -> subprocess.CompletedProcess[str]:
    script = REPO / "scripts" / "policy_purity.py"
    return subprocess.run(
        [sys.executable, str(script), str(root)], capture_output=True, text=True, check=False
    )


def test_policy_holds_no_sql_and_no_seal() -> None:
    done = _purity(REPO)
    assert done.returncode == 0, done.stdout + done.stderr


def test_policy_sql_or_seal_breaks_the_purity_check(tmp_path: Path) -> None:
    """A copy of policy/ that runs SQL, seals, or opens SQLite itself fails, naming file and line."""
    copy = tmp_path / "repo"
    shutil.copytree(REPO / "policy", copy / "policy", ignore=shutil.ignore_patterns("__pycache__"))
    assert _purity(copy).returncode == 0
    sneaky = copy / "policy" / "licence" / "sneaky.py"
    sneaky.write_text(
        "import sqlite3\n"
        "from ...storage.crypto import seal\n"
        "Q = 'DELETE FROM vault.key_meta WHERE name = ?'\n"
        "def f(aead, b):\n"
        "    return seal(aead, b, b'')\n"
    )
    broken = _purity(copy)
    assert broken.returncode == 1
    for line in (1, 2, 3, 5):
        assert f"sneaky.py:{line}: " in broken.stdout, broken.stdout
    assert "policy decides, storage stores" in broken.stderr


def test_no_ignored_import_cycles() -> None:
    """The acyclic contract holds with no ignore list: policy/core.py and its rule modules form no cycle."""
    assert "ignore_imports" not in _contract("acyclic")
