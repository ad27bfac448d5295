"""The gallery's live sink: changes apply at once, re-packing runs off the event loop."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from facegate.handlers.recognition import Matcher
from facegate.handlers.recognition.gallery_load import LiveSink
from facegate.handlers.recognition.scan import SEGMENT

MID = "sface-2021dec@fb143eea"


def _unit(rng: np.random.Generator, n: int) -> np.ndarray:
    x = rng.standard_normal((n, 128)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


class _Recording(Matcher):
    """A real matcher that notes the thread each heavy call ran on."""

    def __init__(self) -> None:
        super().__init__(MID, 128, int8_min_rows=1_000, threads=1)
        self.threads: list[tuple[str, str]] = []

    def pack(self) -> None:
        self.threads.append(("pack", threading.current_thread().name))
        super().pack()

    def remove_subjects(self, subject_ids: object) -> int:
        self.threads.append(("remove_subjects", threading.current_thread().name))
        return super().remove_subjects(subject_ids)  # type: ignore[arg-type]


@pytest.mark.asyncio
@pytest.mark.timeout(300)
async def test_live_changes_apply_at_once_and_pack_in_a_worker_thread() -> None:
    rng = np.random.default_rng(30)
    n = SEGMENT + 500
    x = _unit(rng, n)
    m = _Recording()
    m.add_batch([f"s{i // 2}" for i in range(n)], [f"t{i}" for i in range(n)], x, MID)
    m.prepare()
    sink = LiveSink(m)
    loop_thread = threading.current_thread().name

    # One enrolment: matchable on return, one exact row, no pack yet.
    new = _unit(rng, 1)[0]
    await sink.add("new", "new0", new, MID)
    assert m.search(new, k=1).best.template_id == "new0"  # type: ignore[union-attr]
    assert m._scan.pending == 1 and m.threads == []

    # One subject's removal: unmatchable on return (its rows swapped out), still no pack.
    assert await sink.remove_subject("s3") == 2
    assert not m.has_subject("s3") and m.threads == []
    best = m.search(x[6], k=1).best
    assert best is not None and best.subject_id != "s3"

    # Enough enrolments that a re-pack pays: it runs in a worker thread before the call returns.
    batch = _unit(rng, 3000)
    await sink.add_batch([f"b{i}" for i in range(3000)], [f"bt{i}" for i in range(3000)], batch, MID)
    assert [c for c, _ in m.threads] == ["pack"] and m.threads[0][1] != loop_thread
    assert m._scan.pending == 0

    # A bulk removal past the swap limit compacts in a worker thread, then re-packs there too.
    doomed = [f"s{i}" for i in range(100, 1300)]  # 2,400 rows
    assert await sink.remove_subjects(doomed) == 2400
    calls = m.threads[1:]
    assert [c for c, _ in calls] == ["remove_subjects", "pack"]
    assert all(t != loop_thread for _, t in calls)
    assert m._scan.pending == 0 and not any(m.has_subject(s) for s in doomed)
    assert m.search(batch[5], k=1).best.template_id == "bt5"  # type: ignore[union-attr]
    assert m.search(x[4000], k=1).best.template_id == "t4000"  # type: ignore[union-attr]
