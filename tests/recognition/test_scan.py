"""The approximate scan (4-bit packed segments, pending rows exact) and its bound, through mutations."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from facegate.handlers.recognition import Matcher
from facegate.handlers.recognition import scan as scan_mod
from facegate.handlers.recognition.scan import SEGMENT

MID = "sface-2021dec@fb143eea"


def _unit(rng: np.random.Generator, n: int, d: int = 128) -> np.ndarray:
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _matcher(x: np.ndarray, *, per_subject: int = 1, prepare: bool = False) -> Matcher:
    """A 4-bit matcher holding rows ``x`` (template ``t<i>`` of subject ``s<i // per_subject>``)."""
    m = Matcher(MID, 128, int8_min_rows=1_000, threads=1)
    n = len(x)
    m.add_batch([f"s{i // per_subject}" for i in range(n)], [f"t{i}" for i in range(n)], x, MID)
    if prepare:
        m.prepare()
    return m


def _approx(m: Matcher, q: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Approximate scores of every row, each row's own bound, and the loose bound."""
    padded = m._round_cap(len(m))
    m._q8[len(m) : padded] = 128
    y, bound = m._scan.scores(m._f16, m._q8 if m._qdim else None, len(m), padded, q)
    return y[: len(m)], bound.of(np.arange(len(m))), bound.loose


def _check_bound(m: Matcher, probes: np.ndarray, *, max_loose: float = 0.15) -> None:
    """Every row's approximate score is within its own bound of its exact (float16-row) cosine."""
    for q in probes:
        y, own, loose = _approx(m, q)
        exact = m.exact_scores(q)
        err = np.abs(y - exact)
        assert np.all(err <= own), (err.max(), float(own[np.argmax(err - own)]))
        assert np.all(own <= loose)  # the shortlist's first filter must cover every row
        assert loose < max_loose  # a bound that never fails by being huge would be useless
        assert float(np.median(own)) < 0.1


@pytest.mark.timeout(300)  # packs ~70k rows and scans them exhaustively: slow on a loaded CI
def test_packed_segments_stay_within_their_bound_through_mutations() -> None:
    rng = np.random.default_rng(20)
    n = 2 * SEGMENT + 5000  # two full segments and a partial one
    x = _unit(rng, n)
    m = Matcher(MID, 128, int8_min_rows=1_000, threads=1, prepack=True)
    sids, tids = [f"s{i // 4}" for i in range(n)], [f"t{i}" for i in range(n)]
    m.add_batch(sids, tids, x, MID)
    assert m._scan.packed_segments == 0 and m._scan.pending == n and "MatMulNBits" in m.kernel
    assert m._q8.nbytes == 0  # no int8 copy beside packed segments
    dynamic = Matcher(MID, 128, int8_min_rows=1_000, threads=1, prepack=False)  # the VNNI kernel
    dynamic.add_batch(sids, tids, x, MID)
    assert "MatMulInteger" in dynamic.kernel and dynamic._q8.shape == (dynamic._q8.shape[0], 128)
    # Mated probes (a high true score) and random ones (the background the runner-up comes from).
    probes = np.concatenate([_unit(rng, 4), x[rng.integers(0, n, 4)]])
    _check_bound(m, probes[:2])  # nothing packed yet: every row exact
    m.prepare()
    assert m._scan.packed_segments == 3 and m._scan.pending == 0
    _check_bound(m, probes)
    _check_bound(dynamic, probes)
    # A removal in the first segment moves the last row into it: that row is stale (scored
    # exactly) until re-packed; the rest stays packed.
    assert m.remove_subject("s3") == 4
    assert m.remove_subjects([f"s{i}" for i in range(10_000, 10_100)]) == 400  # swap-removed
    assert 0 < m._scan.pending <= 404 and not m.needs_pack
    _check_bound(m, probes)
    m.add("late", "late0", probes[0], MID)  # an enrolment: one more exact row
    _check_bound(m, probes[:2])
    m.pack()
    assert m._scan.pending == 0 and m._scan.packed_segments == 3
    _check_bound(m, probes)
    # A bulk load: exact until packed; enough pending rows that a pack is due.
    late = _unit(rng, SEGMENT)
    m.add_batch([f"b{i}" for i in range(SEGMENT)], [f"bt{i}" for i in range(SEGMENT)], late, MID)
    assert m._scan.pending == SEGMENT and m.needs_pack
    assert m.search(late[7], k=1).best.template_id == "bt7"  # type: ignore[union-attr]
    m.pack()
    assert m._scan.packed_segments == 4 and not m.needs_pack
    # A bulk removal past the swap limit compacts: every segment from the first hole is re-packed.
    assert m.remove_subjects([f"s{i}" for i in range(20_000, 21_000)]) == 4000
    assert m._scan.pending >= 2 * SEGMENT and m.needs_pack
    _check_bound(m, probes[:2])
    m.pack()
    assert m._scan.pending == 0
    _check_bound(m, probes[:2])
    assert m.search(late[7], k=1).best.template_id == "bt7"  # type: ignore[union-attr]
    assert m.search(probes[0], k=1).best.template_id == "late0"  # type: ignore[union-attr]
    # The search itself finds every remaining template through the packed kernel.
    gone = {"s3", *(f"s{j}" for j in range(10_000, 10_100)), *(f"s{j}" for j in range(20_000, 21_000))}
    for i in rng.integers(0, n, 50):
        best = m.search(x[i], k=1).best
        assert best is not None
        if f"s{i // 4}" in gone:
            assert best.subject_id != f"s{i // 4}"
        else:
            assert best.template_id == f"t{i}"


@pytest.mark.timeout(300)
def test_no_session_is_built_by_a_mutation_or_a_search(monkeypatch: pytest.MonkeyPatch) -> None:
    """Packing a segment (an onnxruntime session, ~20-90 ms) ran inside a removal on the event
    loop (1M rows: ~60 ms; three subjects via remove_subjects: ~1 s) and inside the first
    search after any change. Now only prepare() and pack() build sessions."""
    rng = np.random.default_rng(23)
    n = SEGMENT + 3000
    x = _unit(rng, n)
    m = _matcher(x, per_subject=2, prepare=True)
    built: list[int] = []
    real = scan_mod.nbits_session

    def counting(*args: object, **kwargs: object) -> object:
        built.append(1)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(scan_mod, "nbits_session", counting)
    m.remove_subject("s5")  # first segment: the last row moves in
    m.remove_subjects(["s7", "s9000"])
    m.add("new", "new0", x[0], MID)
    m.remove_template("t100")
    for q in x[rng.integers(0, n, 5)]:
        m.search(q, k=2)
    assert built == []
    assert m.search(x[13], k=1).best.template_id == "t13"  # type: ignore[union-attr]
    m.pack()
    assert built and m._scan.pending == 0


@pytest.mark.timeout(300)
def test_a_pack_built_across_a_change_is_refused_and_redone() -> None:
    """pack() builds without the lock: a row rewritten meanwhile must not be left with the
    codes of the row that was there when the segment was copied."""
    rng = np.random.default_rng(24)
    n = SEGMENT + 100
    x = _unit(rng, n)
    m = _matcher(x)
    with m._lock:
        job = m._scan.snapshot(m._f16)
    assert job is not None and job.seg == 0
    built = m._scan.build(job)
    m.remove_subject("s10")  # row 10 now holds the last row's content
    with m._lock:
        assert not m._scan.install(built)
    assert m._scan.pending == n - 1
    q = x[n - 1]  # the moved row: found at its new place
    assert m.search(q, k=1).best.template_id == f"t{n - 1}"  # type: ignore[union-attr]
    m.pack()
    assert m._scan.pending == 0
    _check_bound(m, np.stack([q, x[3]]))
    assert m.search(q, k=1).best.template_id == f"t{n - 1}"  # type: ignore[union-attr]


@pytest.mark.timeout(300)
def test_a_pack_of_the_last_segment_across_a_shrink_and_an_append_is_refused() -> None:
    """The last segment is copied; a removal elsewhere moves its last row out (n shrinks) and
    an enrolment writes a new row there. The copy holds the moved row: installing it would
    give the new row another row's codes, outside its bound."""
    rng = np.random.default_rng(26)
    n = SEGMENT + 300
    x = _unit(rng, n)
    m = _matcher(x, prepare=True)
    m.add_batch([f"u{i}" for i in range(50)], [f"ut{i}" for i in range(50)], _unit(rng, 50), MID)
    with m._lock:
        job = m._scan.snapshot(m._f16)
    assert job is not None and job.seg == 1  # the last segment: 50 rows pending there
    built = m._scan.build(job)
    m.remove_subject("s5")  # the last row (ut49) moves into row 5
    new = _unit(rng, 1)[0]
    m.add("late", "late0", new, MID)  # written where ut49 was
    with m._lock:
        assert not m._scan.install(built)
    assert m.search(new, k=1).best.template_id == "late0"  # type: ignore[union-attr]
    _check_bound(m, np.stack([new, x[7]]))
    m.pack()
    assert m._scan.pending == 0
    _check_bound(m, np.stack([new, x[7]]))
    assert m.search(new, k=1).best.template_id == "late0"  # type: ignore[union-attr]


@pytest.mark.timeout(300)
def test_searches_and_changes_during_a_pack_in_another_thread() -> None:
    """The live path: pack() in a worker thread while the loop's thread enrols, removes and
    searches; every search is right throughout and the pack ends with nothing pending."""
    rng = np.random.default_rng(25)
    n = 2 * SEGMENT
    x = _unit(rng, n)
    m = _matcher(x)
    packer = threading.Thread(target=m.pack, name="test.pack")
    packer.start()
    extra = _unit(rng, 40)
    for i in range(40):
        m.add(f"e{i}", f"et{i}", extra[i], MID)
        if i % 4 == 0:
            m.remove_subject(f"s{i * 1000}")
        j = int(rng.integers(1, n // 1000)) * 1000 + 1
        assert m.search(x[j], k=1).best.template_id == f"t{j}"  # type: ignore[union-attr]
        assert m.search(extra[i], k=1).best.template_id == f"et{i}"  # type: ignore[union-attr]
    packer.join(timeout=240)
    assert not packer.is_alive()
    m.pack()  # what the changes left pending after the worker's last round
    assert m._scan.pending == 0
    _check_bound(m, np.concatenate([x[:2], extra[:2]]))


@pytest.mark.timeout(300)
def test_float16_rows_score_within_2_pow_minus_11_of_float32() -> None:
    """Issue 16: the re-rank matrix is float16; its cosines agree with float32 to < 1e-3."""
    rng = np.random.default_rng(21)
    x = _unit(rng, 30_000)
    m = _matcher(x, prepare=True)
    worst = 0.0
    for q in np.concatenate([_unit(rng, 10), x[:10]]):
        worst = max(worst, float(np.abs(m.exact_scores(q) - x @ q).max()))
        res = m.search(q, k=2)
        # Same decision as float32: the best and runner-up subjects of the float32 scan.
        order = np.argsort(-(x @ q))[:2]
        assert [mt.subject_id for mt in res.matches] == [f"s{i}" for i in order]
    assert worst <= 2.0**-11


@pytest.mark.timeout(300)
def test_a_row_with_an_outlying_component_gets_its_own_wider_bound() -> None:
    """Issue 16: the bound was computed for the 99.9th percentile of the 4-bit scales.

    A row with one large component has a ~4x coarser step in that block; a few such rows
    (under 0.1%) fell outside the percentile, and a probe whose weight sits in that block
    saw their error exceed the bound. Each row now has its own bound from its own scales.
    """
    rng = np.random.default_rng(22)
    n = 65_536  # whole segments (old and new SEGMENT): a partial one's quantile would catch them
    x = _unit(rng, n)
    odd = rng.choice(n, 40, replace=False)  # 0.06% of the rows
    x[odd, 3] = 1.5 * np.sign(x[odd, 3])  # one outlying component in block 0 (~0.8 once normalised)
    x[odd] /= np.linalg.norm(x[odd], axis=1, keepdims=True)
    m = _matcher(x, prepare=True)
    assert m._scan.pending == 0
    probes = np.zeros((12, 128), np.float32)  # all weight in block 0, where the coarse step is
    probes[:, :32] = rng.standard_normal((12, 32))
    probes /= np.linalg.norm(probes, axis=1, keepdims=True)
    _check_bound(m, probes, max_loose=0.3)  # loose covers the coarse rows too
    for q in probes:
        _, own, _ = _approx(m, q)
        assert own[odd].min() > np.median(own)  # the coarse rows carry the wider bounds
        assert [r.subject_id for r in m.search(q, k=2).matches] == [
            r.subject_id for r in m.exact_search(q, k=2).matches]


@pytest.mark.timeout(300)
def test_a_pack_copied_before_a_clear_never_installs_after_a_refill() -> None:
    rng = np.random.default_rng(27)
    n = 3000
    x, y = _unit(rng, n), _unit(rng, n)
    m = _matcher(x)
    with m._lock:
        job = m._scan.snapshot(m._f16)
    assert job is not None
    built = m._scan.build(job)
    m.clear()  # teardown seen from another process, then a new gallery of the same size
    m.add_batch([f"z{i}" for i in range(n)], [f"zt{i}" for i in range(n)], y, MID)
    with m._lock:
        assert not m._scan.install(built)
    assert m.search(y[9], k=1).best.template_id == "zt9"  # type: ignore[union-attr]
    _check_bound(m, y[:2])
