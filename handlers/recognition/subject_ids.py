"""Subject ids of the matcher's rows: dense int32 indexes into one :class:`~.id_table.IdTable`.

A row's subject is an index (the matcher keeps them in an int32 array); this
table maps ids to indexes and back and counts each subject's rows, so a 1M
gallery costs arrays, not per-subject Python strings, dict entries and boxed
ints (issue 16). Freed indexes are reused. Not thread-safe: the matcher's lock
guards it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from .id_table import IdTable, encode


class SubjectIds:
    """Subject id <-> dense index, with a row count per index."""

    def __init__(self) -> None:
        self._table = IdTable()
        self._top = 0  # indexes [0, _top) were handed out at some point
        self._rows = np.zeros(0, np.int32)
        self._free: list[int] = []

    def __len__(self) -> int:
        """Number of subjects owning at least one row."""
        return len(self._table)

    def __contains__(self, subject_id: object) -> bool:
        return isinstance(subject_id, str) and self.get(subject_id) is not None

    @property
    def nbytes(self) -> int:
        return self._table.nbytes + int(self._rows.nbytes)

    def get(self, subject_id: str) -> int | None:
        idx = int(self._table.find([subject_id])[0])
        return None if idx < 0 else idx

    def index(self, subject_id: str) -> int:
        """The index of ``subject_id``, allocated (with no rows yet) when new."""
        return int(self.indexes([subject_id])[0])

    def indexes(self, subject_ids: Sequence[str]) -> npt.NDArray[np.int32]:
        """The index of each of ``subject_ids`` (one per row); new ones are allocated (no rows yet).

        The start-up load passes every row through here: lookups and allocation run
        vectorised over the batch, not one Python call per subject.
        """
        keys = encode(subject_ids)
        found = self._table.find_keys(keys)
        missing = np.flatnonzero(found < 0)
        if missing.size:
            # The batch's new ids, each once, in first-seen order.
            _, first = np.unique(keys[missing], return_index=True)
            new = keys[missing[np.sort(first)]]
            reused = min(new.size, len(self._free))
            idxs = [self._free.pop() for _ in range(reused)]
            idxs.extend(range(self._top, self._top + new.size - reused))
            self._top += new.size - reused
            if self._top > self._rows.size:
                grown = np.zeros(max(1024, 2 * self._rows.size, self._top), np.int32)
                grown[: self._rows.size] = self._rows
                self._rows = grown
            self._table.insert_keys(new, np.asarray(idxs, np.int32))
            found[missing] = self._table.find_keys(keys[missing])
        return found

    def add_rows(self, idxs: np.ndarray) -> None:
        """One row more for each entry of ``idxs`` (repeats counted)."""
        np.add.at(self._rows, idxs, 1)

    def drop_row(self, idx: int) -> None:
        """One row of ``idx`` is gone; the subject is forgotten with its last row."""
        self._rows[idx] -= 1
        if self._rows[idx] == 0:
            self._table.remove([idx])
            self._free.append(idx)

    def drop_subject(self, idx: int) -> None:
        """Every row of ``idx`` is gone."""
        self.drop_subjects([idx])

    def drop_subjects(self, idxs: Sequence[int]) -> None:
        """Every row of each of ``idxs`` is gone (one table rewrite for all of them)."""
        self._rows[list(idxs)] = 0
        self._table.remove(list(idxs))
        self._free.extend(idxs)

    def name(self, idx: int) -> str:
        return self._table.name(idx)

    def clear(self) -> None:
        self._table.clear()
        self._rows[:] = 0
        self._top = 0
        self._free.clear()
