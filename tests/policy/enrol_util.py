"""Helpers for the resumable-enrolment tests: a device config, consenting people, person folders."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import cv2
import numpy as np
from facegate.runtime.app.cli import main

from .conftest import EVIDENCE

FACES = Path(__file__).parents[1] / "data" / "faces"
PHOTOS = (
    "Family1-Dad1.jpg",
    "Family1-Mom1.jpg",
    "Family1-Son1.jpg",
    "Family1-Daughter1.jpg",
    "Family2-Lady1.jpg",
    "Family2-Man1.jpg",
    "Family3-Lady1.jpg",
    "Family3-Man1.jpg",
)


def write_config(tmp_path: Path) -> Path:
    cfg = tmp_path / "device.toml"
    cfg.write_text(
        f'[device]\nid = "gate-1"\n[storage]\npath = "{tmp_path / "g.db"}"\n'
        f'kek_file = "{tmp_path / "kek"}"\n'
    )
    assert main(["keys", "init", "-c", str(cfg)]) == 0
    return cfg


def consent(cfg: Path, *people: str) -> None:
    """An adult age record and an active biometric consent for each person (through the CLI)."""
    c = str(cfg)
    for sid in people:
        assert main(["subjects", "age", "-c", c, sid, "--birth-date", "1980-02-02"]) == 0
        grant = ["subjects", "consent", "grant", "-c", c, sid, "--method", "paper", "--evidence", EVIDENCE]
        assert main([*grant, "--activate"]) == 0


def variant(src: Path, dst: Path, k: int) -> None:
    """A distinct photo of the same face: pixels changed a little (k = 0 is an exact copy)."""
    if k == 0:
        shutil.copy(src, dst)
        return
    img = cv2.imread(str(src), cv2.IMREAD_COLOR)
    assert img is not None
    out = np.clip(img.astype(np.int16) + (k % 7) - 3 + (k // 7), 0, 255).astype(np.uint8)
    if k % 2:
        out = np.ascontiguousarray(out[:, ::-1])
    assert cv2.imwrite(str(dst), out, [cv2.IMWRITE_JPEG_QUALITY, 95])


def people_folder(root: Path, people: dict[str, tuple[str, int]]) -> dict[str, int]:
    """``root/<person>/img<i>.jpg``: ``person -> (photo, n images)``; returns images per person."""
    counts: dict[str, int] = {}
    for person, (photo, n) in people.items():
        (root / person).mkdir(parents=True)
        for i in range(n):
            variant(FACES / photo, root / person / f"img{i}.jpg", i)
        counts[person] = n
    return counts


def templates(db: Path) -> list[tuple[str, bytes | None]]:
    """(subject id, source digest) of every template in the real SQLite file (read-only)."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30) as conn:
        columns = {str(r[1]) for r in conn.execute("PRAGMA table_info(templates)")}
        digest = "source_digest" if "source_digest" in columns else "NULL"  # a schema before 6
        rows = conn.execute(
            f"SELECT subject_id, {digest} FROM templates ORDER BY subject_id, template_id"  # constant
        ).fetchall()
    conn.close()
    return [(str(s), None if d is None else bytes(d)) for s, d in rows]
