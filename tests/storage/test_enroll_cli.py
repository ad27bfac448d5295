"""``facegate enroll --from DIR`` with the real recognition pipeline and real face photos."""

from __future__ import annotations

import asyncio
import json
import shutil
import textwrap
from pathlib import Path

import numpy as np
import pytest
from facegate.runtime.app.cli import main as cli_main
from facegate.storage import KekSource, KekSourceKind, Store

from .conftest import RecordingSink

EVIDENCE = "sha256:" + "ab" * 32  # digest of the signed paper form


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("model-cache")


def _layout(root: Path, faces: Path) -> None:
    (root / "E100").mkdir(parents=True)
    shutil.copy(faces / "Family1-Dad1.jpg", root / "E100" / "a.jpg")
    shutil.copy(faces / "Family1-Dad2.jpg", root / "E100" / "b.jpg")
    (root / "E200").mkdir()
    shutil.copy(faces / "Family1-Mom1.jpg", root / "E200" / "a.jpg")
    (root / "E200" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (root / "E200" / "notes.txt").write_text("x")
    (root / "E300").mkdir()
    shutil.copy(faces / "test-image-person-group.jpg", root / "E300" / "group.jpg")
    (root / "bad id").mkdir()
    shutil.copy(faces / "Family1-Mom2.jpg", root / "bad id" / "a.jpg")


def test_bulk_enrolment_reports_every_skip(
    tmp_path: Path, data_dir: Path, cache_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    faces = tmp_path / "faces"
    _layout(faces, data_dir / "faces")
    cfg = tmp_path / "device.toml"
    cfg.write_text(
        textwrap.dedent(
            f"""
            [device]
            id = "gate-1"
            [storage]
            path = "{tmp_path / "g.db"}"
            kek_file = "{tmp_path / "kek"}"
            [recognition.models]
            cache_dir = "{cache_dir}"
            """
        )
    )
    c = str(cfg)
    assert cli_main(["keys", "init", "-c", c]) == 0
    # Enrolment goes through the policy: each person needs an age record and an
    # active biometric consent before any of their photos is processed.
    for sid in ("E100", "E200", "E300"):
        assert cli_main(["subjects", "age", "-c", c, sid, "--birth-date", "1980-02-02"]) == 0
        grant = ["subjects", "consent", "grant", "-c", c, sid, "--method", "paper"]
        assert cli_main([*grant, "--evidence", EVIDENCE, "--activate"]) == 0
    capsys.readouterr()
    code = cli_main(["enroll", "--from", str(faces), "-c", c, "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "enrolled 2 person(s), 3 template(s)" in out
    for line in (
        "skipped E200/broken.jpg: image_corrupt",
        "skipped E200/notes.txt: not_an_image",
        "skipped E300/group.jpg: many_faces",
        "skipped E300/: no_usable_image",
        "skipped bad id/: invalid_person_id",
    ):
        assert line in out

    async def check() -> None:
        src = KekSource(kind=KekSourceKind.FILE, file=tmp_path / "kek")
        async with Store(tmp_path / "g.db", src) as st:
            sink = RecordingSink()
            rep = await st.gallery.load_all(sink)
            assert rep.templates == 3 and sink.subjects() == {"E100", "E200"}
            (model,) = sink.models
            assert model.startswith("sface-2021dec")
            vecs = np.stack(list(sink.rows.values()))
            assert vecs.shape == (3, 128)
            np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, rtol=1e-4)
            rows = await st.db.fetchall("SELECT subject_id, detail FROM audit WHERE action = 'enrol'")
            assert {r[0] for r in rows} == {"E100", "E200"}
            consent_ids = {
                r[0] for r in await st.db.fetchall("SELECT consent_id FROM consents")
            }
            assert all(json.loads(r[1])["consent_ref"] in consent_ids for r in rows)

    asyncio.run(check())
