"""The 1:N matcher: correctness, swap-remove, int8 path recall, races, model ids."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from facegate.drivers.models.loader import LoadedModels
from facegate.handlers.recognition import (
    GalleryError,
    Matcher,
    RecognitionEngine,
    TemplateModelMismatch,
)
from facegate.runtime.config.recognition import RecognitionSection

MID = "sface-2021dec@fb143eea"


def _unit(rng: np.random.Generator, n: int, d: int = 128) -> np.ndarray:
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _noisy(x: np.ndarray, rng: np.random.Generator, cos: float = 0.6) -> np.ndarray:
    n = rng.standard_normal(x.shape).astype(np.float32)
    n -= (n @ x) * x
    n /= np.linalg.norm(n)
    return cos * x + np.sqrt(1 - cos**2) * n


def test_best_subject_is_max_over_its_templates() -> None:
    rng = np.random.default_rng(0)
    x = _unit(rng, 6)
    m = Matcher(MID, 128)
    m.add_batch(["a", "a", "b", "c", "c", "c"], [f"t{i}" for i in range(6)], x, MID)
    assert len(m) == 6 and m.subject_count == 3
    res = m.search(x[4], k=2)
    assert res.best is not None and res.best.subject_id == "c" and res.best.template_id == "t4"
    assert res.best.score == pytest.approx(1.0, abs=1e-5)
    assert res.runner_up is not None and res.runner_up.subject_id != "c"
    assert res.subjects == 3 and res.templates == 6


def test_remove_swaps_rows_and_keeps_the_rest_findable() -> None:
    rng = np.random.default_rng(1)
    x = _unit(rng, 300)
    m = Matcher(MID, 128, initial_capacity=16)  # forces several amortised growths
    for i in range(300):
        m.add(f"s{i % 100}", f"t{i}", x[i], MID)
    assert m.remove_subject("s7") == 3
    assert m.remove_subject("s7") == 0
    assert not m.has_subject("s7") and m.subject_count == 99 and len(m) == 297
    for i in range(300):
        best = m.search(x[i], k=1).best
        assert best is not None
        if i % 100 == 7:
            assert best.subject_id != "s7"
        else:
            assert best.template_id == f"t{i}"
    assert m.remove_template("t0") and not m.remove_template("t0")


def test_int8_path_matches_exact_search_on_mated_probes() -> None:
    rng = np.random.default_rng(2)
    x = _unit(rng, 20_000)
    m = Matcher(MID, 128, int8_min_rows=1000)
    ids = [str(i) for i in range(len(x))]
    m.add_batch(ids, ids, x, MID)
    m.remove_subject("5")  # holes must never be matched
    agree = 0
    for j in rng.integers(0, len(x), 200):
        q = _noisy(x[j], rng)
        exact = m.exact_scores(q)
        res = m.search(q, k=2)
        assert res.best is not None
        assert res.best.score == pytest.approx(float(exact.max()), abs=1e-5) or res.best.score < exact.max()
        agree += res.best.score == pytest.approx(float(exact.max()), abs=1e-5)
        assert res.best.subject_id != "5"
    assert agree >= 199


def test_bad_embeddings_and_duplicates_are_refused_atomically() -> None:
    m = Matcher(MID, 4)
    good = np.array([[1, 0, 0, 0]], np.float32)
    m.add_batch(["a"], ["t1"], good, MID)
    with pytest.raises(GalleryError, match="already enrolled"):
        m.add_batch(["b", "c"], ["t2", "t1"], np.eye(4, dtype=np.float32)[:2], MID)
    with pytest.raises(GalleryError, match="NaN"):
        m.add("b", "t3", np.array([np.nan, 0, 0, 1], np.float32), MID)
    with pytest.raises(GalleryError, match="zero vector"):
        m.add("b", "t3", np.zeros(4, np.float32), MID)
    with pytest.raises(GalleryError, match="dims"):
        m.add("b", "t3", np.ones(5, np.float32), MID)
    with pytest.raises(GalleryError, match="length"):
        m.add_batch(["b"], ["t3", "t4"], np.eye(4, dtype=np.float32)[:2], MID)
    assert len(m) == 1 and m.subject_count == 1


def test_templates_of_another_model_are_never_compared() -> None:
    m = Matcher(MID, 4)
    with pytest.raises(TemplateModelMismatch, match="re-enrolment is required"):
        m.add("a", "t", np.ones(4, np.float32), "arcface-r100@deadbeef")
    with pytest.raises(TemplateModelMismatch):
        m.search(np.ones(4, np.float32), model_id="arcface-r100@deadbeef")
    assert len(m) == 0


@pytest.mark.parametrize("int8_min_rows", [1, 1_000_000])
def test_removed_subject_is_unmatchable_once_remove_returns(int8_min_rows: int) -> None:
    """Searches race with enrolments and removals from other threads."""
    rng = np.random.default_rng(3)
    victim = _unit(rng, 1)[0]
    others = _unit(rng, 2000)
    m = Matcher(MID, 128, int8_min_rows=int8_min_rows)
    m.add_batch([f"o{i}" for i in range(2000)], [f"o{i}" for i in range(2000)], others, MID)
    m.add("victim", "v0", victim, MID)
    removed = threading.Event()
    stop = threading.Event()
    errors: list[str] = []

    def searcher() -> None:
        while not stop.is_set():
            was_removed = removed.is_set()  # read BEFORE searching
            best = m.search(victim, k=1).best
            if was_removed and best is not None and best.subject_id == "victim":
                errors.append("matched a removed subject")

    def enroller() -> None:
        for i in range(300):
            m.add(f"n{i}", f"n{i}", _unit(np.random.default_rng(100 + i), 1)[0], MID)

    threads = [threading.Thread(target=searcher) for _ in range(2)]
    threads.append(threading.Thread(target=enroller))
    for t in threads:
        t.start()
    for _ in range(50):
        assert m.search(victim, k=1).best.subject_id == "victim"  # type: ignore[union-attr]
    assert m.remove_subject("victim") == 1
    removed.set()
    threads[-1].join()
    stop.set()
    for t in threads[:-1]:
        t.join()
    assert errors == []
    assert len(m) == 2300 and m.subject_count == 2300


def test_engine_refuses_a_matcher_built_for_another_model(models: LoadedModels) -> None:
    """Templates of another model are never compared, even through a mis-wired matcher."""
    other = Matcher("arcface-r100@deadbeef", models.embedder.dim)
    with pytest.raises(TemplateModelMismatch, match="re-enrol"):
        RecognitionEngine(RecognitionSection(), models, matcher=other)
