"""``facegate subjects restrict|unrestrict|hold|reconsent`` on a real database file."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
from facegate.runtime.app.cli import main

from .conftest import EVIDENCE


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    yield
    structlog.reset_defaults()


def _config(tmp_path: Path, extra: str = "") -> Path:
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
{extra}
"""
    )
    return cfg


def _consent(c: str, subject: str) -> None:
    assert main(["subjects", "age", "-c", c, subject, "--age-band", "18_plus"]) == 0
    grant = ["subjects", "consent", "grant", "-c", c, subject, "--method", "kiosk", "--evidence", EVIDENCE]
    assert main([*grant, "--activate"]) == 0


def _actions(tmp_path: Path) -> list[str]:
    with sqlite3.connect(tmp_path / "dev.db") as conn:
        return [str(r[0]) for r in conn.execute("SELECT action FROM audit ORDER BY seq")]


def test_restrict_hold_and_release_from_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = _config(tmp_path)
    c = str(cfg)
    assert main(["keys", "init", "-c", c]) == 0
    _consent(c, "P1")
    capsys.readouterr()
    assert main(["subjects", "restrict", "-c", c, "P1", "--reason", "objection"]) == 0
    assert "restricted (kept, unmatchable)" in capsys.readouterr().out
    assert main(["subjects", "restrict", "-c", c, "NOBODY"]) == 1
    assert "not known" in capsys.readouterr().err
    assert main(["subjects", "unrestrict", "-c", c, "P1"]) == 0
    assert "restriction lifted" in capsys.readouterr().out

    # Bad input: a clear message, exit 2, nothing written.
    before = _actions(tmp_path)
    assert main(["subjects", "hold", "set", "-c", c, "P1", "--reason", "free text", "--days", "30"]) == 2
    assert "case reference" in capsys.readouterr().err
    assert main(["subjects", "hold", "set", "-c", c, "--reason", "case-1", "--days", "30"]) == 2
    assert main(["subjects", "hold", "set", "-c", c, "P1", "--reason", "case-1", "--days", "0"]) == 2
    assert _actions(tmp_path) == before

    assert main(["subjects", "hold", "set", "-c", c, "P1", "--reason", "case:2026/17", "--days", "30"]) == 0
    hold_id = re.search(r"hold (\S+) on P1", capsys.readouterr().out).group(1)  # type: ignore[union-attr]  # asserted by the match
    assert main(["subjects", "erase", "-c", c, "P1", "--yes"]) == 0
    assert "deferred: a legal hold keeps the data" in capsys.readouterr().out
    assert main(["subjects", "hold", "list", "-c", c]) == 0
    out = capsys.readouterr().out
    assert hold_id in out and "deferred erasure: P1 (erasure)" in out
    assert main(["subjects", "hold", "release", "-c", c, hold_id]) == 0
    assert "1 deferred erasure(s) ran" in capsys.readouterr().out
    assert main(["subjects", "hold", "release", "-c", c, hold_id]) == 1
    actions = _actions(tmp_path)
    for action in ("restrict", "unrestrict", "legal_hold", "erasure_deferred", "legal_hold_release", "erase"):
        assert action in actions, action
    assert main(["audit", "verify", "-c", c]) == 0


def test_reconsent_lists_who_must_consent_again(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = _config(tmp_path)
    c = str(cfg)
    assert main(["keys", "init", "-c", c]) == 0
    _consent(c, "P1")
    assert main(["subjects", "reconsent", "-c", c]) == 0
    assert "no re-consent required" in capsys.readouterr().out
    _config(tmp_path, '[privacy]\nnotice_version = "2"\n[privacy.notices."2"]\nrequire_reconsent = true\n')
    assert main(["subjects", "reconsent", "-c", c]) == 0
    out = capsys.readouterr().out
    # P1 consented but is not enrolled: nobody enrolled needs to re-consent yet.
    assert "notice 2: effective" in out and "P1" not in out
    assert "notice_change" in _actions(tmp_path)
