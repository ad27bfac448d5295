"""Issue 16: template and subject ids held in numpy arrays (IdTable), not Python dicts of str."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest
from facegate.handlers.recognition import id_table
from facegate.handlers.recognition.id_table import IdTable
from facegate.handlers.recognition.matcher import Matcher

MID = "sface-2021dec@fb143eea"


def _slots(*s: int) -> npt.NDArray[np.int32]:
    return np.array(s, np.int32)


def test_find_insert_remove_move_and_widening() -> None:
    t = IdTable()
    t.insert(["a", "bb"], _slots(0, 1))
    assert t.find(["bb", "a", "zz"]).tolist() == [1, 0, -1]
    t.insert(["01a230a7-92c7-701a-8985-6b494b3bd6cc", "é-ü"], _slots(2, 3))  # widens the names
    assert t.name(2) == "01a230a7-92c7-701a-8985-6b494b3bd6cc" and t.name(3) == "é-ü"
    assert t.find(["a", "é-ü"]).tolist() == [0, 3] and len(t) == 4
    t.remove([0])
    t.move(3, 0)  # the matcher's swap-remove: the last row fills the hole
    assert t.find(["a", "é-ü", "bb"]).tolist() == [-1, 0, 1] and len(t) == 3
    assert [t.name(0), t.name(1)] == ["é-ü", "bb"]
    t.clear()
    assert len(t) == 0 and t.find(["bb"]).tolist() == [-1]


def test_compact_renumbers_kept_slots_in_order() -> None:
    t = IdTable()
    ids = [f"t{i}" for i in range(10)]
    t.insert(ids, np.arange(10, dtype=np.int32))
    keep = np.ones(10, bool)
    keep[[0, 4, 5]] = False
    t.compact(keep)
    kept = [i for i, k in zip(ids, keep.tolist(), strict=True) if k]
    assert t.find(kept).tolist() == list(range(7))
    assert t.find(["t0", "t4", "t5"]).tolist() == [-1, -1, -1]
    assert [t.name(i) for i in range(7)] == kept


def test_colliding_hashes_still_find_the_right_id(monkeypatch: pytest.MonkeyPatch) -> None:
    # Every id gets the same hash: lookups must fall back to comparing the bytes.
    monkeypatch.setattr(id_table, "_hash", lambda keys: np.zeros(keys.size, np.uint64))
    t = IdTable()
    t.insert(["x", "y", "z"], _slots(5, 6, 7))
    assert t.find(["z", "y", "x", "w"]).tolist() == [7, 6, 5, -1]
    t.remove([6])
    assert t.find(["z", "y", "x"]).tolist() == [7, -1, 5]


@pytest.mark.parametrize("recent", [1, 3, id_table.RECENT])
def test_agrees_with_a_dict_through_inserts_removals_moves_and_compaction(
    recent: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A small recent run merges into the main run every few inserts: both runs are exercised.
    monkeypatch.setattr(id_table, "RECENT", recent)
    rng = np.random.default_rng(recent)
    t, ref = IdTable(), {}
    n = 0  # slots [0, n) are used, as the matcher's rows
    for step in range(60):
        m = int(rng.integers(1, 6))
        new = [f"id-{step}-{j}" for j in range(m)]
        t.insert(new, np.arange(n, n + m, dtype=np.int32))
        ref.update(zip(new, range(n, n + m), strict=True))
        n += m
        if step % 7 == 3:  # swap-remove one row, as Matcher._remove_row
            row = int(rng.integers(0, n))
            gone = next(k for k, v in ref.items() if v == row)
            t.remove([row])
            del ref[gone]
            if row != n - 1:
                t.move(n - 1, row)
                ref[next(k for k, v in ref.items() if v == n - 1)] = row
            n -= 1
        if step % 11 == 5:  # bulk removal, as Matcher.remove_subjects
            keep = rng.random(n) > 0.3
            order = sorted(ref, key=ref.__getitem__)
            ref = {k: i for i, k in enumerate(k for k, kp in zip(order, keep.tolist(), strict=True) if kp)}
            t.compact(keep)
            n = len(ref)
        ids = [*ref, "never-enrolled"]
        assert t.find(ids).tolist() == [*ref.values(), -1] and len(t) == len(ref)
        assert all(t.name(v) == k for k, v in ref.items())


def test_the_hash_does_not_depend_on_the_array_width() -> None:
    narrow = np.array([b"ab"], "S2")
    wide = np.array([b"ab", b"0123456789"], "S10")
    assert id_table._hash(narrow)[0] == id_table._hash(wide)[0]


def test_matcher_ids_cost_arrays_not_python_objects() -> None:
    # 20k rows: the id tables stay about 50 bytes a template (36-character ids) and
    # 20 a subject; Python strings in a dict and a list cost ~180 a template.
    m = Matcher(MID, 8, int8_min_rows=10**9)  # exact search: this test is about the ids
    n = 20_000
    rng = np.random.default_rng(3)
    emb = rng.standard_normal((n, 8)).astype(np.float32)
    m.add_batch([f"p{i:07d}" for i in range(n)],
                [f"01a230a7-92c7-701a-8985-{i:012d}" for i in range(n)], emb, MID)
    assert m._tids.nbytes < 60 * n and m._ids.nbytes < 40 * n
    top = m.search(emb[123], k=1).best
    assert top is not None and (top.subject_id, top.template_id) == (
        "p0000123", f"01a230a7-92c7-701a-8985-{123:012d}")
    assert m.remove_template(f"01a230a7-92c7-701a-8985-{7:012d}")
    assert not m.remove_template(f"01a230a7-92c7-701a-8985-{7:012d}")
    assert m.remove_subjects([f"p{i:07d}" for i in range(0, n, 2)]) == n // 2
    assert len(m) == n // 2 - 1 and m.subject_count == n // 2 - 1
    assert m.has_subject("p0000001") and not m.has_subject("p0000000")


@pytest.mark.parametrize("collide", [False, True])
def test_batch_remove_and_move_agree_with_a_dict(collide: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """A subject's erasure removes all its rows in one call and moves as many tail rows into
    the holes (Matcher._remove_rows); entries are found by hash, equal hashes included."""
    if collide:  # every id in one of 3 hashes: the scan over equal hashes must pick by slot
        real = id_table._hash
        monkeypatch.setattr(id_table, "_hash", lambda keys: real(keys) % np.uint64(3))
    monkeypatch.setattr(id_table, "RECENT", 40)  # entries in both runs
    rng = np.random.default_rng(int(collide))
    t, ref = IdTable(), {}
    n = 0
    for step in range(40):
        new = [f"r{step}-{j}" for j in range(int(rng.integers(1, 9)))]
        t.insert(new, np.arange(n, n + len(new), dtype=np.int32))
        ref.update(zip(new, range(n, n + len(new)), strict=True))
        n += len(new)
        if step % 3 == 2:
            rows = rng.choice(n, int(rng.integers(1, min(n, 6) + 1)), replace=False)
            end = n - rows.size
            holes = np.sort(rows[rows < end])
            movers = np.array([r for r in range(end, n) if r not in set(rows.tolist())], np.int32)
            by_slot = {v: k for k, v in ref.items()}
            for r in rows.tolist():
                del ref[by_slot[r]]
            t.remove(rows)
            t.move(movers[::-1], holes[::-1])  # any order: each entry keeps its own destination
            for src, dst in zip(movers.tolist(), holes.tolist(), strict=True):
                ref[by_slot[src]] = dst
            n = end
        assert t.find([*ref, "never"]).tolist() == [*ref.values(), -1] and len(t) == len(ref)
        assert all(t.name(v) == k for k, v in ref.items())
