"""Issue 10 (operator experience): rerunning a bulk enrolment skips what is enrolled, duplicates nothing.

Real parts: the CLI, the real models and OpenCV decoder, real SQLite files.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import cv2
import pytest
import structlog
from facegate.runtime.app.cli import main

from .enrol_util import FACES, PHOTOS, consent, people_folder, templates, write_config


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    yield
    structlog.reset_defaults()


def _enroll(root: Path, cfg: Path) -> int:
    return main(["enroll", "--from", str(root), "-c", str(cfg), "--no-progress"])


@pytest.mark.timeout(300)  # real models, several CLI runs, on a loaded CI machine
def test_rerun_of_a_bulk_enrolment_skips_every_enrolled_image(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Fails on the code before the fix: the second run doubled every template."""
    cfg = write_config(tmp_path)
    consent(cfg, "E1", "E2")
    root = tmp_path / "people"
    people_folder(root, {"E1": (PHOTOS[0], 2), "E2": (PHOTOS[1], 2)})
    capsys.readouterr()
    assert _enroll(root, cfg) == 0
    first = templates(tmp_path / "g.db")
    assert Counter(s for s, _ in first) == {"E1": 2, "E2": 2}
    capsys.readouterr()
    assert _enroll(root, cfg) == 0  # a rerun where everything is done is a success
    out = capsys.readouterr().out
    assert Counter(s for s, _ in templates(tmp_path / "g.db")) == {"E1": 2, "E2": 2}  # no duplicate
    assert templates(tmp_path / "g.db") == first
    assert all(d is not None and len(d) == 32 for _, d in first)
    for rel in ("E1/img0.jpg", "E1/img1.jpg", "E2/img0.jpg", "E2/img1.jpg"):
        assert f"skipped {rel}: already enrolled from this image" in out, out
    assert "images: 0 enrolled, 4 skipped (already enrolled from this image), 0 failed" in out, out
    # A new image for a known person: only it is enrolled.
    cv2.imwrite(str(root / "E1" / "new.png"), cv2.imread(str(FACES / "Family1-Dad2.jpg")))
    assert _enroll(root, cfg) == 0
    assert "images: 1 enrolled, 4 skipped" in capsys.readouterr().out
    assert Counter(s for s, _ in templates(tmp_path / "g.db")) == {"E1": 3, "E2": 2}


@pytest.mark.timeout(300)
def test_a_lossless_reencoding_or_renamed_copy_is_the_same_image(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The digest covers the decoded pixels: a PNG of the JPEG's pixels is caught, a rename too."""
    cfg = write_config(tmp_path)
    consent(cfg, "E1")
    face = FACES / PHOTOS[0]
    a = tmp_path / "a.jpg"
    a.write_bytes(face.read_bytes())
    png = tmp_path / "same-pixels.png"
    assert cv2.imwrite(str(png), cv2.imread(str(face), cv2.IMREAD_UNCHANGED))
    copy = tmp_path / "renamed.jpg"
    copy.write_bytes(face.read_bytes())
    c = str(cfg)
    capsys.readouterr()
    assert main(["subjects", "enrol", "-c", c, "E1", "--image", str(a)]) == 0
    assert main(["subjects", "enrol", "-c", c, "E1", "--image", str(png), "--image", str(copy)]) == 0
    out = capsys.readouterr().out
    assert f"skipped {png}: already enrolled from this image" in out, out
    assert f"skipped {copy}: already enrolled from this image" in out, out
    assert "enrolled E1: 0 template(s)" in out, out
    assert len(templates(tmp_path / "g.db")) == 1


@pytest.mark.timeout(300)
def test_one_photo_cannot_enrol_two_people(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The same image under another person is refused and named by file; the rest still enrols."""
    cfg = write_config(tmp_path)
    consent(cfg, "E1", "E2")
    root = tmp_path / "people"
    people_folder(root, {"E1": (PHOTOS[0], 1), "E2": (PHOTOS[1], 1)})
    (root / "E2" / "stolen.jpg").write_bytes((root / "E1" / "img0.jpg").read_bytes())
    capsys.readouterr()
    assert _enroll(root, cfg) == 0
    out = capsys.readouterr().out
    assert (
        "skipped E2/stolen.jpg: refused: this image already enrols another subject "
        "(one photo cannot enrol two people)" in out
    ), out
    assert "images: 2 enrolled, 0 skipped (already enrolled from this image), 1 failed" in out, out
    assert Counter(s for s, _ in templates(tmp_path / "g.db")) == {"E1": 1, "E2": 1}
    # The single-subject command refuses it too, names the file, and enrols nothing.
    img = root / "E1" / "img0.jpg"
    assert main(["subjects", "enrol", "-c", str(cfg), "E2", "--image", str(img)]) == 1
    err = capsys.readouterr().err
    assert f"({img}) refused: this image already enrols another subject" in err and "Traceback" not in err
    assert len(templates(tmp_path / "g.db")) == 2


@pytest.mark.timeout(900)  # two real processes loading the models; waits are on conditions
def test_kill_9_in_the_middle_of_a_bulk_run_then_the_same_command_again(tmp_path: Path) -> None:
    """A real ``facegate enroll`` process is killed -9 after some people committed, then rerun."""
    cfg = write_config(tmp_path)
    people = {f"P{i}": (photo, 3) for i, photo in enumerate(PHOTOS)}
    consent(cfg, *people)
    root = tmp_path / "people"
    counts = people_folder(root, people)
    total = sum(counts.values())
    db = tmp_path / "g.db"
    cmd = [sys.executable, "-m", "facegate.runtime.app.cli", "enroll", "--from", str(root), "-c", str(cfg),
           "--no-progress"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 300  # model load + first person on a loaded CI machine
        while not templates(db) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=60)
    at_kill = templates(db)
    assert at_kill, "the bulk run committed nothing before the deadline"
    assert len(at_kill) < total, "the run finished before the kill: nothing was interrupted"
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    after = templates(db)
    assert Counter(s for s, _ in after) == counts  # exactly one template per (subject, image)
    digests = [d for _, d in after]
    assert None not in digests and len(set(digests)) == total
    assert set(at_kill) <= set(after)  # nothing committed before the kill was lost or redone
    n_skipped = len(at_kill)
    assert f"images: {total - n_skipped} enrolled, {n_skipped} skipped" in done.stdout, done.stdout
    assert "Traceback" not in done.stdout + done.stderr
