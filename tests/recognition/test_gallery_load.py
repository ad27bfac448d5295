"""Start-up load: bulk subject indexes, and the heap trimmed once the gallery is in the matcher."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
import pytest_asyncio
from facegate.drivers.models.loader import LoadedModels
from facegate.handlers.recognition import Matcher, RecognitionEngine, gallery_load
from facegate.handlers.recognition.gallery_load import GalleryLoader, trim_heap
from facegate.handlers.recognition.subject_ids import SubjectIds
from facegate.runtime.clock import ManualClock
from facegate.runtime.config.recognition import RecognitionSection
from facegate.storage import KekSource, Store

MID = "sface-2021dec@fb143eea"


def test_bulk_indexes_allocate_as_one_by_one_and_reuse_freed_indexes() -> None:
    bulk, single = SubjectIds(), SubjectIds()
    first = ["a", "b", "a", "c", "b"]
    np.testing.assert_array_equal(bulk.indexes(first), [single.index(s) for s in first])
    np.testing.assert_array_equal(bulk.indexes(first), [0, 1, 0, 2, 1])
    for ids in (bulk, single):
        ids.add_rows(np.array([0, 1, 2], np.int32))
        ids.drop_subject(0)  # "a" leaves: its index is free again
    second = ["d", "b", "e", "d"]
    got = bulk.indexes(second)
    np.testing.assert_array_equal(got, [single.index(s) for s in second])
    assert got.dtype == np.int32 and got[0] == 0 and got[2] == 3  # freed index first, then new
    assert "a" not in bulk and len(bulk) == 4  # b, c, d, e
    many = [f"s{i}" for i in range(3000)]  # past the initial row-count table
    idx = bulk.indexes(many)
    bulk.add_rows(idx)
    assert len(set(idx.tolist())) == 3000 and bulk.name(int(idx[-1])) == "s2999"


def test_interleaved_subjects_in_one_batch_own_their_rows() -> None:
    m = Matcher(MID, 4)
    eye = np.eye(4, dtype=np.float32)
    m.add_batch(["a", "b", "a", "c"], ["t1", "t2", "t3", "t4"], eye, MID)
    assert len(m) == 4 and m.subject_count == 3
    top = m.search(eye[2], k=1).matches[0]
    assert (top.subject_id, top.template_id) == ("a", "t3")
    assert m.remove_subject("a") == 2 and m.subject_count == 2 and len(m) == 2


def test_trim_heap_returns_a_bool() -> None:
    assert isinstance(trim_heap(), bool)  # True on glibc when pages were returned; never raises


@pytest_asyncio.fixture
async def store(tmp_path: Path, kek: KekSource) -> AsyncIterator[Store]:
    async with Store(tmp_path / "gallery.db", kek, clock=ManualClock()) as st:
        yield st


@pytest.mark.asyncio
async def test_load_trims_the_heap_before_and_after_packing_once_the_gallery_is_in_the_matcher(
    store: Store, models: LoadedModels, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = RecognitionEngine(RecognitionSection(), models)
    rng = np.random.default_rng(3)
    vecs = rng.standard_normal((6, 2, models.embedder.dim)).astype(np.float32)
    await store.gallery.enroll_many([(f"p{i}", vecs[i]) for i in range(6)], engine.model_id)
    rows_at_trim: list[int] = []
    monkeypatch.setattr(gallery_load, "trim_heap", lambda: rows_at_trim.append(len(engine.matcher)) or True)
    loader = GalleryLoader(engine, store, clock=ManualClock())
    await loader.load()
    # Before packing (its temporaries reuse the load's freed pages) and after it (issue 16).
    assert rows_at_trim == [12, 12] and loader.loaded.is_set()
    assert engine.matcher.subject_count == 6
