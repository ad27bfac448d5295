"""Issue 10.5: everything facegate writes is owner-only whatever the umask (real CLI, real SQLite)."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from ..fixtures.brokers import free_port

CLI = [sys.executable, "-m", "facegate.runtime.app.cli"]


def _cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=lambda: os.umask(0o022),  # the point: a permissive umask, no threads here
        check=False,
    )


def modes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): f"{stat.S_IMODE(p.stat().st_mode):04o}"
        for p in sorted([root, *root.rglob("*")])
        if not p.is_symlink()
    }


@pytest.mark.timeout(300)
def test_fresh_keys_init_run_and_export_are_owner_only_under_umask_022(tmp_path: Path) -> None:
    data = tmp_path / "var" / "facegate"  # does not exist yet: facegate creates it
    cfg = tmp_path / "device.toml"
    cfg.write_text(
        textwrap.dedent(
            f"""
            [device]
            id = "gate-1"
            [mqtt]
            broker = "embedded"
            port = {free_port()}
            [storage]
            path = "{data / "facegate.db"}"
            kek_file = "{data / "kek"}"
            [recognition]
            enabled = false
            [camera]
            driver = "simulated"
            [gpio]
            driver = "simulated"
            [lifecycle]
            watchdog = false
            """
        )
    )
    c = str(cfg)
    for args in (
        ("keys", "init", "-c", c),
        ("subjects", "age", "-c", c, "S1", "--birth-date", "1980-02-02"),
        ("subjects", "consent", "grant", "-c", c, "S1", "--method", "paper", "--evidence",
         "sha256:" + "ab" * 32, "--activate"),
        ("subjects", "export", "-c", c, "S1", "--out", str(tmp_path / "export.json")),
    ):  # fmt: skip
        done = _cli(*args)
        assert done.returncode == 0, (args, done.stdout, done.stderr)
    proc = subprocess.Popen(  # a real device run, stopped with SIGTERM
        [*CLI, "run", "--config", c],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        preexec_fn=lambda: os.umask(0o022),  # noqa: PLW1509  # see above
    )
    try:
        deadline = time.monotonic() + 120
        while not Path(f"{data / 'facegate.db'}-wal").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(2.0)  # let it write telemetry/outbox rows through the WAL
        during = modes(data)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    found = modes(data)
    for title, listing in (("while running", during), ("after a clean stop", found)):
        print(f"\nfile modes after keys init + subjects, umask 022, {title}:")
        for name, mode in listing.items():
            print(f"  {mode}  {name}")
    assert any(n.endswith("-wal") for n in during), during
    assert not {n: m for n, m in during.items() if n != "." and m != "0600"}, during
    assert found["."] == "0700", found
    assert {n for n in found if n != "."} >= {"facegate.db", "facegate.keys.db", "kek"}, found
    loose = {n: m for n, m in found.items() if n != "." and m != "0600"}
    assert not loose, loose
    assert f"{stat.S_IMODE((tmp_path / 'export.json').stat().st_mode):04o}" == "0600"
