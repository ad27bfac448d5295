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
#: Rows are stored as float16: a cosine differs from the float32 one by at most 2^-11.
F16_COSINE = 2.0**-11


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
    assert res.best.score == pytest.approx(1.0, abs=F16_COSINE)  # float16 rows: see below
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


@pytest.mark.timeout(300)  # 200 exhaustive float16 reference scans: slow on a loaded 2-core CI
def test_int8_path_matches_exact_search_on_mated_probes() -> None:
    rng = np.random.default_rng(2)
    x = _unit(rng, 20_000)
    m = Matcher(MID, 128, int8_min_rows=1000)
    ids = [str(i) for i in range(len(x))]
    m.add_batch(ids, ids, x, MID)
    m.prepare()  # the packed kernel, as after a start-up load
    m.remove_subject("5")  # holes must never be matched (a pending row until re-packed)
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


def _clustered_gallery(
    rng: np.random.Generator, subjects: int, max_templates: int, d: int = 128
) -> tuple[np.ndarray, list[str], list[str], np.ndarray]:
    """Subjects with 1..max_templates templates each (noisy views of a centre), rows
    interleaved as if enrolled over months, so one subject's rows span many blocks."""
    centres = _unit(rng, subjects, d)
    counts = rng.integers(1, max_templates + 1, subjects)
    counts[: subjects // 10] = max_templates  # plenty of subjects at the configured maximum
    owner = np.repeat(np.arange(subjects), counts)
    rng.shuffle(owner)
    x = np.stack([_noisy(centres[s], rng, cos=0.8) for s in owner]).astype(np.float32)
    sids = [f"s{s}" for s in owner]
    tids = [f"t{i}" for i in range(len(owner))]
    return x, sids, tids, centres


@pytest.mark.parametrize("int8_min_rows", [1_000, 1_000_000])
def test_runner_up_is_found_when_the_best_subject_owns_twenty_templates(int8_min_rows: int) -> None:
    """Issue 16: the best subject's 20 templates fill 20 blocks; the look-alike must be re-scored."""
    rng = np.random.default_rng(16)
    d = 128
    background = _unit(rng, 20_000, d)
    centre = _unit(rng, 1, d)[0]
    x = background.copy()
    sids = [f"b{i}" for i in range(len(x))]
    tids = [f"bt{i}" for i in range(len(x))]
    # The best subject's templates were enrolled over time: one in every 1000 rows.
    for i in range(20):
        x[i * 1000] = _noisy(centre, rng, cos=0.9)
        sids[i * 1000] = "alice"
    m = Matcher(MID, d, int8_min_rows=int8_min_rows)
    m.add_batch(sids, tids, x, MID)
    lookalike = _noisy(centre, rng, cos=0.7)
    m.add("alice-twin", "twin0", lookalike, MID)
    probe = _noisy(centre, rng, cos=0.95)
    res = m.search(probe, k=2)
    ref = m.exact_search(probe, k=2)
    assert ref.best is not None and ref.best.subject_id == "alice"
    assert ref.runner_up is not None and ref.runner_up.subject_id == "alice-twin"
    assert res.best is not None and res.best.subject_id == "alice"
    assert res.runner_up is not None and res.runner_up.subject_id == "alice-twin"
    assert res.runner_up.score == pytest.approx(ref.runner_up.score, abs=1e-5)
    assert res.best.score - res.runner_up.score == pytest.approx(
        ref.best.score - ref.runner_up.score, abs=1e-5)


@pytest.mark.timeout(300)  # 300 exhaustive float16 reference scans: minutes on a loaded 2-core CI
def test_int8_path_agrees_with_exact_search_on_best_and_runner_up() -> None:
    """recall@1 and runner-up agreement >= 0.999-class on subjects with up to 20 templates."""
    rng = np.random.default_rng(17)
    x, sids, tids, centres = _clustered_gallery(rng, 3_000, 20)
    m = Matcher(MID, 128, int8_min_rows=1_000)
    m.add_batch(sids, tids, x, MID)
    assert len(m) > 20_000  # many blocks of 256 rows
    queries = 300
    best_agree = runner_agree = 0
    for s in rng.integers(0, len(centres), queries):
        q = _noisy(centres[s], rng, cos=0.8)
        res, ref = m.search(q, k=2), m.exact_search(q, k=2)
        assert ref.best is not None and ref.runner_up is not None
        assert res.best is not None and res.runner_up is not None
        best_agree += res.best.subject_id == ref.best.subject_id
        runner_agree += res.runner_up.subject_id == ref.runner_up.subject_id
        # Scores are always exact float32 re-scores, never int8 estimates.
        assert res.best.score <= ref.best.score + 1e-5
    assert best_agree == queries
    assert runner_agree >= queries - 1


def test_exact_search_ranks_subjects_not_rows() -> None:
    rng = np.random.default_rng(18)
    x, sids, tids, centres = _clustered_gallery(rng, 50, 20)
    m = Matcher(MID, 128)
    m.add_batch(sids, tids, x, MID)
    owner = np.array([int(s[1:]) for s in sids])
    q = _noisy(centres[3], rng, cos=0.8)
    scores = x @ (q / np.linalg.norm(q))
    per_subject = np.full(len(centres), -2.0)
    np.maximum.at(per_subject, owner, scores)
    expected = [f"s{i}" for i in np.argsort(-per_subject)[:5]]
    for res in (m.search(q, k=5), m.exact_search(q, k=5)):
        assert [mt.subject_id for mt in res.matches] == expected


def test_remove_subjects_compacts_in_one_pass_and_keeps_the_rest_findable() -> None:
    rng = np.random.default_rng(19)
    x, sids, tids, _ = _clustered_gallery(rng, 400, 5)
    m = Matcher(MID, 128, int8_min_rows=1_000)
    m.add_batch(sids, tids, x, MID)
    doomed = {f"s{i}" for i in range(0, 400, 3)}
    expected_rows = sum(s in doomed for s in sids)
    assert m.remove_subjects([*doomed, "nobody"]) == expected_rows
    assert m.remove_subjects(doomed) == 0
    assert len(m) == len(sids) - expected_rows and m.subject_count == 400 - len(doomed)
    for i in rng.integers(0, len(sids), 150):
        best = m.search(x[i], k=1).best
        assert best is not None
        if sids[i] in doomed:
            assert best.subject_id not in doomed
        else:
            assert best.template_id == tids[i] and best.score == pytest.approx(1.0, abs=F16_COSINE)
    kept = next(t for s, t in zip(sids, tids, strict=True) if s not in doomed)
    assert m.remove_template(kept) and not m.remove_template(tids[0] if sids[0] in doomed else "x")
    # Freed subject slots are reused without mixing identities.
    fresh = _unit(rng, 1)[0]
    m.add("newcomer", "n0", fresh, MID)
    best = m.search(fresh, k=1).best
    assert best is not None and best.subject_id == "newcomer" and best.template_id == "n0"
