"""An unwritable model cache is an operator mistake: a clear error naming the folder and the
config key, exit 1, no traceback (issue 10, operator experience)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from facegate.drivers.models import ModelCacheError, ModelOptions, load_models


def test_load_models_names_the_cache_and_the_key(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    with pytest.raises(ModelCacheError, match=r"recognition\.models\.cache_dir") as err:
        load_models(ModelOptions(cache_dir=blocker / "cache"))
    assert str(blocker / "cache") in str(err.value)


@pytest.mark.timeout(180)
def test_cli_prints_no_traceback_for_an_unwritable_model_cache(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    config = tmp_path / "device.toml"
    config.write_text(f'[device]\nid = "gate-1"\n\n[recognition.models]\ncache_dir = "{blocker}/cache"\n')
    (tmp_path / "faces").mkdir()
    run = subprocess.run(
        [sys.executable, "-m", "facegate.runtime.app.cli", "calibrate",
         str(tmp_path / "faces"), "-c", str(config)],
        capture_output=True, text=True, timeout=170, check=False,
    )
    assert run.returncode == 1, run
    assert "Traceback" not in run.stderr + run.stdout
    assert "model cache" in run.stderr and "recognition.models.cache_dir" in run.stderr
