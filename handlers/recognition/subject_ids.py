"""Subject ids of the matcher's rows: dense int32 indexes into one list of names.

A row's subject is an index (the matcher keeps them in an int32 array); this
table maps ids to indexes and back and counts each subject's rows, so a 1M
gallery costs one dict entry per subject, not per-row or per-subject Python
containers. Freed indexes are reused. Not thread-safe: the matcher's lock
guards it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt


class SubjectIds:
    """Subject id <-> dense index, with a row count per index."""

    def __init__(self) -> None:
        self._index: dict[str, int] = {}
        self._names: list[str | None] = []
        self._rows = np.zeros(0, np.int32)
        self._free: list[int] = []

    def __len__(self) -> int:
        """Number of subjects owning at least one row."""
        return len(self._index)

    def __contains__(self, subject_id: object) -> bool:
        return subject_id in self._index

    def get(self, subject_id: str) -> int | None:
        return self._index.get(subject_id)

    def index(self, subject_id: str) -> int:
        """The index of ``subject_id``, allocated (with no rows yet) when new."""
        idx = self._index.get(subject_id)
        if idx is not None:
            return idx
        if self._free:
            idx = self._free.pop()
            self._names[idx] = subject_id
        else:
            idx = len(self._names)
            self._names.append(subject_id)
            if idx >= self._rows.size:
                grown = np.zeros(max(1024, 2 * self._rows.size), np.int32)
                grown[: self._rows.size] = self._rows
                self._rows = grown
        self._index[subject_id] = idx
        return idx

    def indexes(self, subject_ids: Sequence[str]) -> npt.NDArray[np.int32]:
        """The index of each of ``subject_ids`` (one per row), new ones allocated as :meth:`index` does.

        The start-up load passes every row through here: lookups and the allocation of
        new subjects run as dict/list bulk operations, not one Python call per subject.
        """
        found = list(map(self._index.get, subject_ids))
        if None in found:
            # dict.fromkeys: the new ids in first-seen order, each once.
            new = list(dict.fromkeys(s for s, i in zip(subject_ids, found, strict=True) if i is None))
            reused = min(len(new), len(self._free))
            for sid in new[:reused]:
                self.index(sid)
            fresh = new[reused:]
            base = len(self._names)
            self._names.extend(fresh)
            self._index.update(zip(fresh, range(base, base + len(fresh)), strict=True))
            if len(self._names) > self._rows.size:
                grown = np.zeros(max(1024, 2 * self._rows.size, len(self._names)), np.int32)
                grown[: self._rows.size] = self._rows
                self._rows = grown
            found = list(map(self._index.__getitem__, subject_ids))
        return np.array(found, dtype=np.int32)

    def add_rows(self, idxs: np.ndarray) -> None:
        """One row more for each entry of ``idxs`` (repeats counted)."""
        np.add.at(self._rows, idxs, 1)

    def drop_row(self, idx: int) -> None:
        """One row of ``idx`` is gone; the subject is forgotten with its last row."""
        self._rows[idx] -= 1
        if self._rows[idx] == 0:
            name = self._names[idx]
            assert name is not None
            del self._index[name]
            self._names[idx] = None
            self._free.append(idx)

    def drop_subject(self, idx: int) -> None:
        """Every row of ``idx`` is gone."""
        self._rows[idx] = 1
        self.drop_row(idx)

    def name(self, idx: int) -> str:
        name = self._names[idx]
        assert name is not None
        return name

    def clear(self) -> None:
        self._index.clear()
        self._names.clear()
        self._rows[:] = 0
        self._free.clear()
