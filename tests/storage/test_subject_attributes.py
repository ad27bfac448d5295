"""SubjectRecords.attribute_values: every subject's attribute in paged reads; unopenable blobs named."""

from __future__ import annotations

import pytest
from facegate.storage import Store
from facegate.storage import subjects as subjects_mod

from .conftest import embeddings


@pytest.mark.asyncio
async def test_attribute_values_pages_through_every_subject_and_names_unopenable_blobs(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(subjects_mod, "_PAGE", 2)  # several pages with five subjects
    for i in range(5):
        sid = f"S{i}"
        await store.gallery.enroll(sid, embeddings(1, seed=i), "sface-2021dec")
        attrs = {"valid_until": f"2027-01-0{i + 1}"} if i != 3 else {"department": "R&D"}
        await store.gallery.set_attributes(sid, display_name=None, attributes=attrs)
    await store.gallery.enroll("NOATTRS", embeddings(1, seed=9), "sface-2021dec")
    async with store.transaction() as tx:  # one flipped byte: fails authentication
        row = await tx.fetchone("SELECT attrs FROM subjects WHERE subject_id = 'S4'")
        assert row is not None
        blob = bytearray(row[0])
        blob[-1] ^= 1
        await tx.execute("UPDATE subjects SET attrs = ? WHERE subject_id = 'S4'", (bytes(blob),))
    values, unopened = await store.subjects.attribute_values("valid_until")
    assert values == [("S0", "2027-01-01"), ("S1", "2027-01-02"), ("S2", "2027-01-03")]
    assert unopened == ["S4"]
