"""``facegate licence ...`` end to end on real files: vendor tooling, device tooling, CLI enrolment.

Exit codes and messages are what an operator sees: refusals name the state, a missing file is
a clear error (no traceback), offline enrolment is refused without a usable licence.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
from facegate.runtime.app.cli import main

from .conftest import write_identifiers

FACE = Path(__file__).parents[2] / "data" / "faces" / "Family1-Dad1.jpg"


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    yield
    structlog.reset_defaults()


def _vendor(tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str = "vendor") -> tuple[Path, str]:
    key = tmp_path / f"{name}.key"
    assert main(["licence", "keygen", "--out", str(key)]) == 0
    out = capsys.readouterr().out
    public = re.search(r"public key.*: (\S+)$", out, re.MULTILINE)
    assert public is not None and key.stat().st_mode & 0o777 == 0o600
    assert main(["licence", "keygen", "--out", str(key)]) == 1  # never overwrites a key
    assert "refusing to overwrite" in capsys.readouterr().err
    return key, public.group(1)


def _config(tmp_path: Path, public: str) -> Path:
    root = write_identifiers(tmp_path / "root")
    cfg = tmp_path / "device.toml"
    cfg.write_text(
        f"""
[device]
id = "gate-9"
site = "Test"

[storage]
path = "{tmp_path / "dev.db"}"
kek_source = "file"
kek_file = "{tmp_path / "facegate.kek"}"

[recognition]
enabled = false

[licence]
enabled = true
identifier_root = "{root}"
file = "{tmp_path / "device.licence"}"

[licence.vendor_keys]
vendor = "{public}"
"""
    )
    assert main(["keys", "init", "-c", str(cfg)]) == 0
    return cfg


def _issue(key: Path, fingerprint: str, days: str, *features: str, out: Path | None = None) -> int:
    """``facegate licence issue`` with the given features (``--feature`` each) and output file."""
    argv = ["licence", "issue", "--key", str(key), "--fingerprint", fingerprint, "--days", days]
    for feature in features:
        argv += ["--feature", feature]
    return main(argv + (["--out", str(out)] if out is not None else []))


def test_vendor_and_device_tooling(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key, public = _vendor(tmp_path, capsys)
    c = str(_config(tmp_path, public))
    capsys.readouterr()
    assert main(["licence", "fingerprint", "-c", c]) == 0
    fp = capsys.readouterr().out.strip()
    assert re.fullmatch(r"[0-9a-f]{64}", fp)

    assert main(["licence", "status", "-c", c]) == 1
    assert json.loads(capsys.readouterr().out)["state"] == "missing"

    lic = tmp_path / "gate.licence"
    assert _issue(key, fp, "30", "max_subjects=5", "liveness_model=pad", out=lic) == 0
    capsys.readouterr()
    assert main(["licence", "inspect", str(lic), "--trust", public]) == 0
    shown = capsys.readouterr().out
    assert "signature: ok" in shown and '"max_subjects": 5' in shown

    assert main(["licence", "install", str(lic), "-c", c]) == 0
    assert "installed: state valid" in capsys.readouterr().out
    assert main(["licence", "status", "-c", c]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["state"] == "valid" and status["features"] == {"max_subjects": 5, "liveness_model": "pad"}

    # A licence for another device, and one from a key the device does not trust: refused by state.
    other = tmp_path / "other.licence"
    assert _issue(key, "ab" * 32, "30", out=other) == 0
    assert main(["licence", "install", str(other), "-c", c]) == 1
    assert "wrong_device" in capsys.readouterr().err
    rogue_key, _ = _vendor(tmp_path, capsys, name="rogue")
    rogue = tmp_path / "rogue.licence"
    assert _issue(rogue_key, fp, "30", out=rogue) == 0
    assert main(["licence", "inspect", str(rogue), "--trust", public]) == 1
    assert main(["licence", "install", str(rogue), "-c", c]) == 1
    assert "untrusted_key" in capsys.readouterr().err
    assert main(["licence", "status", "-c", c]) == 0  # the valid licence is still in force

    # Operator mistakes: clear errors, no traceback.
    assert main(["licence", "inspect", str(tmp_path / "nope.licence")]) == 1
    err = capsys.readouterr().err
    assert "nope.licence" in err and "Traceback" not in err
    assert main(["licence", "issue", "--key", str(key), "--fingerprint", "xyz", "--days", "1"]) == 2
    assert _issue(key, fp, "1", "novalue") == 2


def test_cli_enrolment_refused_without_a_usable_licence(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, public = _vendor(tmp_path, capsys)
    c = str(_config(tmp_path, public))
    assert main(["subjects", "age", "-c", c, "P1", "--age-band", "18_plus"]) == 0
    capsys.readouterr()
    # Refused before consent is even looked at, and before any model is loaded.
    assert main(["subjects", "enrol", "-c", c, "P1", "--image", str(FACE)]) == 1
    err = capsys.readouterr().err
    assert "enrolment needs a usable licence (licence state: missing)" in err and "Traceback" not in err
