"""Issue 10.6: a full device run creates no onnxruntime device id and opens no DMI file.

onnxruntime's official builds (1.32 here) create ``~/.cache/Microsoft/DeveloperTools/
.onnxruntime/deviceid``, read ``/sys/class/dmi/id/*`` and queue usage telemetry on
import unless ``ORT_DISABLE_TELEMETRY=1`` is set before it. facegate sets it in the
``__init__`` of every package that can import onnxruntime. This runs ``facegate run``
(recognition on: the real ONNX sessions) with the variable UNSET in the environment,
a private HOME, under strace when available, and checks what it touched.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from ..fixtures.brokers import free_port

ROOT = Path(__file__).resolve().parents[2]
DMI = re.compile(r"/sys/(class|devices/virtual)/dmi/")


def test_every_module_importing_onnxruntime_is_in_a_package_that_disables_telemetry() -> None:
    importers: list[str] = []
    for folder in ("runtime", "drivers", "handlers", "storage", "policy"):
        for path in (ROOT / folder).rglob("*.py"):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
            names += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
            if any(n.split(".")[0] == "onnxruntime" for n in names):
                assert folder in ("drivers", "handlers"), path
                rel = path.relative_to(ROOT).with_suffix("")
                importers.append(".".join(["facegate", *rel.parts]).removesuffix(".__init__"))
    assert importers, "no module imports onnxruntime: this test no longer checks anything"
    # Importing each of them in a clean interpreter, with the variable unset, must set it
    # before onnxruntime itself is imported (a meta-path spy records the environment then).
    spy = textwrap.dedent(
        """
        import importlib, importlib.abc, os, sys
        seen = []
        class Spy(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path, target=None):
                if name == "onnxruntime":
                    seen.append(os.environ.get("ORT_DISABLE_TELEMETRY"))
        sys.meta_path.insert(0, Spy())
        for mod in sys.argv[1:]:
            importlib.import_module(mod)
        print("SEEN", seen)
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "ORT_DISABLE_TELEMETRY"}
    out = subprocess.run(
        [sys.executable, "-c", spy, *importers],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    ).stdout
    seen = out.rsplit("SEEN", 1)[1].strip()
    assert seen.startswith("['1'") and "None" not in seen, (importers, seen)


@pytest.mark.timeout(600)
def test_a_device_run_creates_no_ort_device_id_and_reads_no_dmi(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
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
            path = "{tmp_path / "data" / "facegate.db"}"
            kek_file = "{tmp_path / "data" / "kek"}"
            [recognition.models]
            cache_dir = "{tmp_path / "models"}"
            [camera]
            driver = "simulated"
            [gpio]
            driver = "simulated"
            [lifecycle]
            watchdog = false
            [logging]
            level = "info"
            """
        )
    )
    env = {k: v for k, v in os.environ.items() if k != "ORT_DISABLE_TELEMETRY"}
    env |= {"HOME": str(home), "XDG_CACHE_HOME": str(home / ".cache")}
    cli = [sys.executable, "-m", "facegate.runtime.app.cli"]
    init = subprocess.run(
        [*cli, "keys", "init", "-c", str(cfg)], env=env, capture_output=True, timeout=120, check=False
    )
    assert init.returncode == 0, init.stderr
    strace = shutil.which("strace")
    trace = tmp_path / "trace.txt"
    prefix = [strace, "-f", "-qq", "-e", "trace=open,openat,stat,newfstatat,access", "-o", str(trace)]
    run = [*(prefix if strace else []), *cli, "run", "--config", str(cfg)]
    proc = subprocess.Popen(  # own process group: SIGINT reaches strace AND the device
        run, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 500
        for line in proc.stdout:  # until the models are loaded and the device started
            lines.append(line)
            if "device.started" in line or time.monotonic() > deadline:
                break
        time.sleep(1.0)
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        rest, _ = proc.communicate(timeout=120)
    out = "".join(lines) + (rest or "")
    assert "models.loaded" in out and "device.started" in out, out[-3000:]
    created = sorted(str(p.relative_to(home)) for p in home.rglob("*"))
    assert not created, created  # no ~/.cache/Microsoft/DeveloperTools/.onnxruntime/deviceid
    if strace is None:
        pytest.skip("strace not installed: the DMI check needs it (the cache check passed)")
    dmi = [ln for ln in trace.read_text().splitlines() if DMI.search(ln)]
    assert not dmi, dmi[:5]
