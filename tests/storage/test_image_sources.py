"""The in-transaction image check of ``Gallery.enroll_in`` (storage/image_sources.py): the last word.

A concurrent run may pass the caller's pre-check; the writing transaction still
leaves one template per image and refuses an image of another subject.
"""

from __future__ import annotations

import os

import pytest
from facegate.storage import Store, image_sources
from facegate.storage.errors import ImageEnrolsAnotherSubjectError, InvalidInputError

from .conftest import embeddings


@pytest.mark.asyncio
async def test_enroll_in_leaves_out_known_images_and_refuses_another_subjects(store: Store) -> None:
    g = store.gallery
    a, b, c = os.urandom(32), os.urandom(32), os.urandom(32)
    async with store.transaction() as tx:
        first, _ = await g.enroll_in(tx, "S1", embeddings(2, seed=1), "m1", actor="t", sources=[a, b])
    assert len(first.template_ids) == 2 and first.already_enrolled == 0
    # A retry with one new image: only it is written; the repeat within the call counts once.
    async with store.transaction() as tx:
        again, arr = await g.enroll_in(tx, "S1", embeddings(4, seed=2), "m1", actor="t", sources=[a, c, b, c])
    assert len(again.template_ids) == 1 and again.already_enrolled == 3 and arr.shape == (1, 128)
    # Nothing new at all: nothing written, no error.
    async with store.transaction() as tx:
        none, arr = await g.enroll_in(tx, "S1", embeddings(1, seed=3), "m1", actor="t", sources=[a])
    assert none.template_ids == () and none.already_enrolled == 1 and arr.shape[0] == 0
    # Another subject's image: refused, and the whole write rolls back.
    with pytest.raises(ImageEnrolsAnotherSubjectError) as refused:
        async with store.transaction() as tx:
            await g.enroll_in(tx, "S2", embeddings(2, seed=4), "m1", actor="t", sources=[os.urandom(32), a])
    assert "S1" not in str(refused.value) and refused.value.code == "image_enrols_another_subject"
    assert await image_sources.owners(store.db, [a, b, c]) == {a: "S1", b: "S1", c: "S1"}
    assert (await store.db.fetchone("SELECT COUNT(*) FROM templates"))[0] == 3
    with pytest.raises(InvalidInputError):  # one digest per embedding, 32 bytes each
        async with store.transaction() as tx:
            await g.enroll_in(tx, "S3", embeddings(2, seed=5), "m1", actor="t", sources=[os.urandom(32)])
    with pytest.raises(InvalidInputError):
        await image_sources.owners(store.db, [b"short"])
