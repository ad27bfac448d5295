"""Benchmark: withdrawal-to-unmatchable time on a real database and the real matcher.

``python -m facegate.policy.bench [--subjects N] [--templates 2] [--rounds 20] [--dir DIR]``

Enrols N consenting subjects (SFace-sized 128-d templates) into a fresh
encrypted store in DIR, loads them into the real 1:N matcher, then withdraws
the consent of ``rounds`` random subjects one by one and prints, per
withdrawal: the time from the call to the moment the matcher no longer holds
the subject ("unmatchable"), and the time until the call returned (consent
committed, DEK shredded, rows deleted, receipt + audit written, WAL
checkpointed). The target is unmatchable <= 1 s.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from collections.abc import Sequence
from datetime import date
from pathlib import Path

import numpy as np
import numpy.typing as npt

from ..handlers.recognition.matcher import Matcher
from ..runtime.clock import SystemClock
from ..runtime.config.privacy import PrivacySection
from ..runtime.logs import configure_logging
from ..storage import KekSource, KekSourceKind, Store
from ..storage.crypto import new_key
from ..storage.kek import encode_key
from .consent_model import ConsentKind, ConsentMethod
from .core import EnrolItem, Policy

MODEL = "sface-2021dec"
DIM = 128
_ENV = "FACEGATE_BENCH_KEK"


class TimedSink:
    """The real matcher, noting when each subject left it (perf_counter)."""

    def __init__(self, matcher: Matcher) -> None:
        self.matcher = matcher
        self.removed_at: dict[str, float] = {}

    def add_batch(
        self,
        subject_ids: Sequence[str],
        template_ids: Sequence[str],
        embeddings: npt.NDArray[np.float32],
        model_id: str,
    ) -> None:
        self.matcher.add_batch(subject_ids, template_ids, embeddings, model_id)

    def add(
        self, subject_id: str, template_id: str, embedding: npt.NDArray[np.float32], model_id: str
    ) -> None:
        self.matcher.add(subject_id, template_id, embedding, model_id)

    def remove_subject(self, subject_id: str) -> int:
        n = self.matcher.remove_subject(subject_id)
        self.removed_at.setdefault(subject_id, time.perf_counter())
        return n


def _pct(values: list[float], q: float) -> float:
    return sorted(values)[min(len(values) - 1, int(q * len(values)))]


async def run(subjects: int, templates: int, rounds: int, directory: Path) -> dict[str, float]:
    os.environ[_ENV] = encode_key(new_key())
    clock = SystemClock()
    rng = np.random.default_rng(7)
    matcher = Matcher(MODEL, DIM, threads=1)
    sink = TimedSink(matcher)
    consent_ids: dict[str, str] = {}
    async with Store(
        directory / "bench.db", KekSource(kind=KekSourceKind.ENV, env=_ENV), clock=clock
    ) as store:
        policy = await Policy(store, PrivacySection(), clock=clock, sink=sink).open()
        t0 = time.perf_counter()
        for i in range(subjects):
            sid = f"b{i:07d}"
            await policy.consents.record_age(sid, birth_date=date(1980, 1, 1), actor="bench")
            rec = await policy.consents.grant(
                subject_id=sid,
                kind=ConsentKind.BIOMETRIC,
                method=ConsentMethod.API,
                evidence_digest="sha256:bench-evidence",
                actor="bench",
                activate=True,
            )
            consent_ids[sid] = rec.consent_id
        batch = 500
        ids = sorted(consent_ids)
        probes: dict[str, npt.NDArray[np.float32]] = {}
        for start in range(0, len(ids), batch):
            items = []
            for sid in ids[start : start + batch]:
                x = rng.standard_normal((templates, DIM)).astype(np.float32)
                x /= np.linalg.norm(x, axis=1, keepdims=True)
                probes[sid] = x[0]
                items.append(EnrolItem(sid, x))
            await policy.enrol_many(items, MODEL, actor="bench")
        setup_s = time.perf_counter() - t0
        unmatchable: list[float] = []
        total: list[float] = []
        for picked in rng.choice(ids, size=min(rounds, len(ids)), replace=False):
            sid = str(picked)
            t_call = time.perf_counter()
            await policy.withdraw_consent(consent_ids[sid], actor="bench")
            t_return = time.perf_counter()
            best = matcher.search(probes[sid], k=1).best
            assert best is None or best.subject_id != sid, "withdrawn subject still matches"
            unmatchable.append(sink.removed_at[sid] - t_call)
            total.append(t_return - t_call)
    return {
        "subjects": float(subjects),
        "templates": float(subjects * templates),
        "setup_s": setup_s,
        "unmatchable_median_ms": statistics.median(unmatchable) * 1e3,
        "unmatchable_p95_ms": _pct(unmatchable, 0.95) * 1e3,
        "unmatchable_max_ms": max(unmatchable) * 1e3,
        "return_median_ms": statistics.median(total) * 1e3,
        "return_p95_ms": _pct(total, 0.95) * 1e3,
        "return_max_ms": max(total) * 1e3,
    }


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m facegate.policy.bench", description=__doc__.splitlines()[0])
    ap.add_argument("--subjects", type=int, default=1000, help="enrolled subjects (default 1000)")
    ap.add_argument("--templates", type=int, default=2, help="templates per subject")
    ap.add_argument("--rounds", type=int, default=20, help="withdrawals measured")
    ap.add_argument("--dir", type=Path, help="directory for the database (default: a temp dir)")
    args = ap.parse_args(argv)
    configure_logging(device_id="bench", level="warning")
    with tempfile.TemporaryDirectory(prefix="facegate-bench-") as tmp:
        res = asyncio.run(run(args.subjects, args.templates, args.rounds, args.dir or Path(tmp)))
    print(
        f"withdrawal-to-unmatchable over {res['subjects']:.0f} subjects / {res['templates']:.0f} templates "
        f"(setup {res['setup_s']:.1f} s):"
    )
    print(
        f"  unmatchable: median {res['unmatchable_median_ms']:.3f} ms, "
        f"p95 {res['unmatchable_p95_ms']:.3f} ms, max {res['unmatchable_max_ms']:.3f} ms (target <= 1000 ms)"
    )
    print(
        f"  call returned (shredded, deleted, audited, checkpointed): "
        f"median {res['return_median_ms']:.1f} ms, p95 {res['return_p95_ms']:.1f} ms, "
        f"max {res['return_max_ms']:.1f} ms"
    )
    return 0 if res["unmatchable_max_ms"] <= 1000 else 1


if __name__ == "__main__":
    raise SystemExit(main())
