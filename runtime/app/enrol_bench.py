"""Bulk enrolment benchmark: a first run against a rerun that skips everything (resumable enrolment).

``python -m facegate.runtime.app.enrol_bench [--images-per-person 4] [--json]``

In a temporary folder it builds a device config, an encrypted store, and one
consenting adult per packaged demo face (``runtime/demo/faces``), each with
``--images-per-person`` distinct photos (the face with its brightness shifted
and mirrored: different pixels, so different images). Then it times three
real ``facegate enroll --from`` runs (:func:`run_enrolment`, models loaded each
time as the CLI does): an empty folder before and after (the fixed cost: model
load, store open; the smaller of the two), the first run (every image
decoded, digested and embedded) and the same command again (every image
decoded, digested and skipped). It prints the per-image cost of each next to
the CPU model and load average.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ...policy import ConsentKind, ConsentMethod, Policy
from ...storage import Store
from ..config import load_config
from ..demo import faces_dir
from ..machine import cpu_label
from .cli.enroll_cmd import run_enrolment

EVIDENCE = "sha256:" + "00" * 32


def _photos(root: Path, per: int) -> int:
    n = 0
    for i, face in enumerate(sorted(faces_dir().glob("*.jpg"))):
        img = cv2.imread(str(face), cv2.IMREAD_COLOR)
        if img is None:
            continue
        person = root / f"B{i:03d}"
        person.mkdir(parents=True)
        for k in range(per):
            out = np.clip(img.astype(np.int16) + 2 * k - per, 0, 255).astype(np.uint8)
            if k % 2:
                out = np.ascontiguousarray(out[:, ::-1])
            cv2.imwrite(str(person / f"img{k}.jpg"), out, [cv2.IMWRITE_JPEG_QUALITY, 95])
            n += 1
    return n


async def _consent(cfg: Path, people: list[str]) -> None:
    loaded = load_config(cfg)
    async with Store.from_config(loaded.config.storage) as store:
        policy = await Policy(store, loaded.config.privacy, clock=store.clock).open()
        for sid in people:
            await policy.consents.record_age(sid, birth_date=date(1980, 2, 2), actor="bench")
            await policy.consents.grant(
                subject_id=sid, kind=ConsentKind.BIOMETRIC, method=ConsentMethod.PAPER,
                evidence_digest=EVIDENCE, actor="bench", activate=True,
            )


async def _timed(root: Path, cfg: Path) -> tuple[float, Any]:
    t0 = time.perf_counter()
    summary = await run_enrolment(root, cfg, actor="bench", progress=False)
    return time.perf_counter() - t0, summary


async def _runs(work: Path, cfg: Path) -> tuple[tuple[float, Any], ...]:
    root, empty = work / "people", work / "empty"
    await _consent(cfg, sorted(p.name for p in root.iterdir()))
    warm = await _timed(empty, cfg)  # a cold first model load (cache, page cache) is not the fixed cost
    first, rerun = await _timed(root, cfg), await _timed(root, cfg)
    again = await _timed(empty, cfg)
    return min(warm, again, key=lambda t: t[0]), first, rerun


def bench(per: int) -> dict[str, Any]:
    """Run the three enrolments in a temporary folder; returns the numbers."""
    from .cli import main as cli_main  # noqa: PLC0415  # the real 'facegate keys init'

    with tempfile.TemporaryDirectory(prefix="facegate-enrol-bench-") as tmp:
        work = Path(tmp)
        cfg = work / "device.toml"
        cfg.write_text(
            f'[device]\nid = "bench-1"\n[storage]\npath = "{work / "g.db"}"\nkek_file = "{work / "kek"}"\n'
        )
        (work / "empty").mkdir()
        images = _photos(work / "people", per)
        if cli_main(["keys", "init", "-c", str(cfg)]) != 0:
            raise SystemExit("enrol_bench: keys init failed")
        (fixed, _), (first_s, first), (rerun_s, rerun) = asyncio.run(_runs(work, cfg))
    return {
        "cpu": cpu_label(),
        "images": images,
        "fixed_s": round(fixed, 2),
        "first_run_s": round(first_s, 2),
        "rerun_s": round(rerun_s, 2),
        "enrol_ms_per_image": round(1e3 * max(first_s - fixed, 0.0) / images, 1),
        "skip_ms_per_image": round(1e3 * max(rerun_s - fixed, 0.0) / images, 1),
        "first_run": {"enrolled": first.images_enrolled, "skipped": first.images_already,
                      "failed": first.images_failed},
        "rerun": {"enrolled": rerun.images_enrolled, "skipped": rerun.images_already,
                  "failed": rerun.images_failed},
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m facegate.runtime.app.enrol_bench", description=__doc__)
    p.add_argument("--images-per-person", type=int, default=4, help="distinct photos per demo face")
    p.add_argument("--json", action="store_true", help="one JSON object instead of lines")
    args = p.parse_args(argv)
    out = bench(max(1, args.images_per_person))
    if args.json:
        print(json.dumps(out))
        return 0
    cpu = out["cpu"]
    print(f"cpu: {cpu['model']} ({cpu['cores']} cores), load average {cpu['load_avg']}")
    print(f"images: {out['images']} in {len(list(faces_dir().glob('*.jpg')))} person folders")
    print(f"fixed cost (models, store; empty folder): {out['fixed_s']} s")
    print(f"first run:  {out['first_run_s']} s, {out['enrol_ms_per_image']} ms/image  {out['first_run']}")
    print(f"rerun:      {out['rerun_s']} s, {out['skip_ms_per_image']} ms/image  {out['rerun']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
