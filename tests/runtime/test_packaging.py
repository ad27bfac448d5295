"""Packaging: one `facegate` namespace in the wheel, every package listed, the entry point works."""

from __future__ import annotations

import configparser
import os
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ROOTS = {
    "runtime": "facegate.runtime",
    "handlers": "facegate.handlers",
    "drivers": "facegate.drivers",
    "policy": "facegate.policy",
    "storage": "facegate.storage",
    "runtime/testing": "facegate.testing",  # nested: its own import root, not facegate.runtime.testing
}


def _pyproject() -> dict[str, object]:
    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))


def _tree_packages() -> set[str]:
    found = set()
    for folder, dotted in ROOTS.items():
        nested = [REPO / other for other in ROOTS if other != folder and other.startswith(folder + "/")]
        for init in (REPO / folder).rglob("__init__.py"):
            if any(init.is_relative_to(n) for n in nested):
                continue  # mapped under its own name
            rel = init.parent.relative_to(REPO / folder)
            if "__pycache__" in rel.parts:
                continue
            found.add(".".join([dotted, *rel.parts]))
    return found


def test_every_package_dir_is_listed_in_pyproject() -> None:
    listed = set(_pyproject()["tool"]["setuptools"]["packages"])
    tree = _tree_packages()
    assert tree - listed == set(), "package dirs missing from pyproject [tool.setuptools] packages"
    missing = {p for p in listed if p not in tree}
    assert missing == set(), "pyproject lists packages without an __init__.py"


def test_package_dir_maps_into_the_facegate_namespace() -> None:
    mapping = _pyproject()["tool"]["setuptools"]["package-dir"]
    assert mapping == {v: k for k, v in ROOTS.items()}


def test_wheel_has_only_the_facegate_namespace_at_top_level(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/", 1)[0] for n in names}
    assert {t for t in top if not t.endswith(".dist-info")} == {"facegate"}
    for forbidden in ("runtime", "storage", "policy", "handlers", "drivers", "testing", "tests"):
        assert forbidden not in top
    assert "facegate/testing/plugin.py" in names
    assert not any(n.startswith("facegate/runtime/testing/") for n in names)
    packages = {n.rsplit("/", 1)[0].replace("/", ".") for n in names if n.endswith("/__init__.py")}
    assert _tree_packages() <= packages
    assert "facegate/runtime/py.typed" in names


def test_wheel_declares_the_console_entry_point(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        ep_name = next(n for n in zf.namelist() if n.endswith(".dist-info/entry_points.txt"))
        parser = configparser.ConfigParser()
        parser.read_string(zf.read(ep_name).decode())
    assert parser["console_scripts"]["facegate"] == "facegate.runtime.app.cli:main"


def test_installed_wheel_imports_and_runs(wheel: Path, tmp_path: Path) -> None:
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
         "--target", str(target), str(wheel)],
        check=True, capture_output=True, timeout=300,
    )
    assert not (target / "runtime").exists() and not (target / "storage").exists()
    env = {**os.environ, "PYTHONPATH": str(target)}
    code = (
        "import facegate.runtime.app.cli as c, facegate.runtime.app.device, facegate.handlers.door;"
        "print(c.__file__)"
    )
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().startswith(str(target))
    proc = subprocess.run(
        [sys.executable, "-m", "facegate.runtime.app.cli", "version"],
        env=env, capture_output=True, text=True, check=False,
    )
    assert proc.returncode == 0 and proc.stdout.startswith("facegate 0.1.0")


def test_editable_install_exposes_the_entry_point() -> None:
    facegate = Path(sys.executable).parent / "facegate"
    proc = subprocess.run([str(facegate), "--help"], capture_output=True, text=True, check=False)
    assert proc.returncode == 0
    for command in ("run", "demo", "config", "version"):
        assert command in proc.stdout
