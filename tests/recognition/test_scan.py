"""The prepacked int8 scan gives the same integer scores as the dynamic kernel, through mutations."""

from __future__ import annotations

import numpy as np
from facegate.handlers.recognition import Matcher
from facegate.handlers.recognition.scan import SEGMENT, Int8Scan

MID = "sface-2021dec@fb143eea"


def _unit(rng: np.random.Generator, n: int, d: int = 128) -> np.ndarray:
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _scores(m: Matcher, scan: Int8Scan, q: np.ndarray) -> np.ndarray:
    padded = m._round_cap(len(m))
    qi = np.clip(np.rint(q * m._qscale), -127, 127).astype(np.int8)
    m._q8[len(m) : padded] = 128
    return scan.scores(m._q8, padded, qi)[: len(m)]


def test_prepacked_segments_score_exactly_like_the_dynamic_kernel() -> None:
    rng = np.random.default_rng(20)
    n = 2 * SEGMENT + 5000  # two packed segments and a dynamic tail
    x = _unit(rng, n)
    m = Matcher(MID, 128, int8_min_rows=1_000, threads=1, prepack=True)
    m.add_batch([f"s{i // 4}" for i in range(n)], [f"t{i}" for i in range(n)], x, MID)
    reference = Int8Scan(1, prepack=False)
    assert m._scan.packed_segments == 2
    probes = _unit(rng, 5)
    for q in probes:
        assert np.array_equal(_scores(m, m._scan, q), _scores(m, reference, q))
    # A removal in the first segment moves the last row into it: re-packed, still exact.
    assert m.remove_subject("s3") == 4
    assert m.remove_subjects([f"s{i}" for i in range(10_000, 10_100)]) == 400
    assert m._scan.packed_segments == 2
    for q in probes:
        assert np.array_equal(_scores(m, m._scan, q), _scores(m, reference, q))
    # The search itself finds every remaining template through the packed kernel.
    for i in rng.integers(0, n, 50):
        best = m.search(x[i], k=1).best
        assert best is not None
        if f"s{i // 4}" in {"s3", *(f"s{j}" for j in range(10_000, 10_100))}:
            assert best.subject_id != f"s{i // 4}"
        else:
            assert best.template_id == f"t{i}"
    assert "prepacked" in m.kernel
