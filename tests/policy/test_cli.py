"""``facegate subjects ...`` and ``facegate destroy`` end to end on a real database file."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from facegate.runtime.app.cli import main

from .conftest import EVIDENCE

FACES = Path(__file__).parents[1] / "data" / "faces"


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    yield
    structlog.reset_defaults()


@pytest.fixture
def config(tmp_path: Path) -> Path:
    cfg = tmp_path / "device.toml"
    cfg.write_text(
        f"""
[device]
id = "gate-7"
site = "Test"

[storage]
path = "{tmp_path / "dev.db"}"
kek_source = "file"
kek_file = "{tmp_path / "facegate.kek"}"
"""
    )
    assert main(["keys", "init", "-c", str(cfg)]) == 0
    return cfg


def test_consent_enrol_export_verify_erase_from_the_cli(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    c = str(config)
    face = str(FACES / "Family1-Dad1.jpg")
    # Without consent: refused before any model is loaded, naming the missing consent.
    assert main(["subjects", "enrol", "-c", c, "P1", "--image", face]) == 1
    assert "biometric:access_control" in capsys.readouterr().err
    assert main(["subjects", "age", "-c", c, "P1", "--age-band", "18_plus"]) == 0
    assert (
        main(
            [
                "subjects",
                "consent",
                "grant",
                "-c",
                c,
                "P1",
                "--method",
                "kiosk",
                "--evidence",
                EVIDENCE,
                "--activate",
            ]
        )
        == 0
    )
    assert "active" in capsys.readouterr().out
    assert main(["subjects", "enrol", "-c", c, "P1", "--image", face, "--name", "Dad"]) == 0
    assert "1 template(s)" in capsys.readouterr().out
    assert main(["subjects", "list", "-c", c]) == 0
    out = capsys.readouterr().out
    assert "P1\ttemplates=1" in out and "Dad" not in out
    assert main(["subjects", "rectify", "-c", c, "P1", "--set", "department=ops"]) == 0
    # Export with encrypted templates, then verify with only the public key.
    recipient = X25519PrivateKey.generate()
    rkey = base64.b64encode(recipient.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()
    bundle = tmp_path / "p1.json"
    assert (
        main(
            [
                "subjects",
                "export",
                "-c",
                c,
                "P1",
                "--out",
                str(bundle),
                "--templates",
                "--recipient-key",
                rkey,
            ]
        )
        == 0
    )
    assert main(["subjects", "public-key", "-c", c]) == 0
    pub = capsys.readouterr().out.strip().splitlines()[-1]
    assert main(["subjects", "verify-export", str(bundle), "--public-key", pub]) == 0
    env = json.loads(bundle.read_text())
    env["payload"] = env["payload"].replace('"ops"', '"sales"')
    bundle.write_text(json.dumps(env))
    assert main(["subjects", "verify-export", str(bundle), "--public-key", pub]) == 1
    assert "modified" in capsys.readouterr().err
    # Erasure asks for confirmation; --yes does it.
    assert main(["subjects", "erase", "-c", c, "P1"]) == 2
    assert main(["subjects", "erase", "-c", c, "P1", "--yes"]) == 0
    assert "1 template(s)" in capsys.readouterr().out
    assert main(["subjects", "list", "-c", c]) == 0
    assert "P1" not in capsys.readouterr().out


def test_destroy_needs_confirmation_then_wipes(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    c = str(config)
    assert main(["subjects", "age", "-c", c, "P2", "--birth-date", "1970-01-02"]) == 0
    assert main(["destroy", "-c", c]) == 2  # not a terminal, no --yes
    assert (tmp_path / "facegate.kek").exists()
    assert main(["destroy", "-c", c, "--yes", "--unit", ""]) == 0
    assert "destroyed: 0 subject(s)" in capsys.readouterr().out
    assert not (tmp_path / "facegate.kek").exists()
    assert main(["audit", "verify", "--db", str(tmp_path / "dev.db")]) == 0


def test_enrol_names_a_missing_or_failing_image_without_a_traceback(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 10 (operator experience): a missing file and a rejected image are named."""
    c = str(config)
    face = str(FACES / "Family1-Dad1.jpg")
    missing = tmp_path / "missing.jpg"
    assert main(["subjects", "enrol", "-c", c, "P1", "--image", face, "--image", str(missing)]) == 2
    err = capsys.readouterr().err
    assert f"cannot read image {missing}" in err and "Traceback" not in err, err
    assert main(["subjects", "age", "-c", c, "P1", "--age-band", "18_plus"]) == 0
    grant = ["subjects", "consent", "grant", "-c", c, "P1", "--method", "kiosk", "--evidence", EVIDENCE]
    assert main([*grant, "--activate"]) == 0
    capsys.readouterr()
    # A real JPEG with no face in it, second of two: the CLI says which one.
    blank = tmp_path / "blank.jpg"
    import cv2  # noqa: PLC0415  # the real OpenCV encoder
    import numpy as np  # noqa: PLC0415

    assert cv2.imwrite(str(blank), np.full((480, 640, 3), 128, dtype=np.uint8))
    assert main(["subjects", "enrol", "-c", c, "P1", "--image", face, "--image", str(blank)]) == 1
    err = capsys.readouterr().err
    assert f"image 2 of 2 ({blank}) failed" in err and "Traceback" not in err, err
    assert main(["subjects", "list", "-c", c]) == 0
    assert "0 subject(s)" in capsys.readouterr().err


def test_missing_kek_on_an_initialised_db_does_not_advise_keys_init(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The advice must be something that works: 'keys init' refuses an initialised database."""
    c = str(config)
    assert main(["subjects", "list", "-c", c]) == 0  # opens: initialised
    (tmp_path / "facegate.kek").unlink()
    capsys.readouterr()
    assert main(["subjects", "list", "-c", c]) != 0
    err = capsys.readouterr().err
    assert "already initialised" in err and "restore" in err, err
    assert "run 'facegate keys init'" not in err and "Traceback" not in err, err
    assert main(["keys", "init", "-c", c]) != 0  # ... which is why it is not advised
