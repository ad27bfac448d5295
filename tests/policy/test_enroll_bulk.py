"""``facegate enroll --from DIR`` (bulk import) goes through policy: no consent, no processing."""

from __future__ import annotations

import shutil
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


def test_bulk_import_enrols_only_consenting_people(
    tmp_path: Path, data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    faces = data_dir / "faces"
    root = tmp_path / "people"
    for person, photo in (
        ("E100", "Family1-Dad1.jpg"),
        ("E200", "Family1-Mom1.jpg"),
        ("K1", "Family1-Son1.jpg"),
    ):
        (root / person).mkdir(parents=True)
        shutil.copy(faces / photo, root / person / "a.jpg")
    cfg = tmp_path / "device.toml"
    cfg.write_text(
        f'[device]\nid = "gate-1"\n[storage]\npath = "{tmp_path / "g.db"}"\nkek_file = "{tmp_path / "kek"}"\n'
    )
    c = str(cfg)
    assert main(["keys", "init", "-c", c]) == 0
    assert main(["subjects", "age", "-c", c, "E100", "--birth-date", "1980-02-02"]) == 0
    assert main(["subjects", "age", "-c", c, "K1", "--birth-date", "2019-02-02"]) == 0
    for sid in ("E100", "K1"):
        assert (
            main(
                [
                    "subjects",
                    "consent",
                    "grant",
                    "-c",
                    c,
                    sid,
                    "--method",
                    "paper",
                    "--evidence",
                    EVIDENCE,
                    "--activate",
                ]
            )
            == 0
        )
    capsys.readouterr()
    assert main(["enroll", "--from", str(root), "-c", c, "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "enrolled 1 person(s), 1 template(s)" in out
    assert "skipped E200/: consent_required:biometric:access_control" in out
    assert "skipped K1/: consent_required:guardian:access_control" in out
    with sqlite3.connect(tmp_path / "g.db") as conn:
        assert [r[0] for r in conn.execute("SELECT subject_id FROM subjects")] == ["E100"]
        (detail,) = conn.execute("SELECT detail FROM audit WHERE action = 'enrol'").fetchone()
        (cid,) = conn.execute("SELECT consent_id FROM consents WHERE subject_id = 'E100'").fetchone()
        assert cid in detail  # the registry's consent id is on the enrolment's audit row
