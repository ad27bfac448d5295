"""Ids of dense slots (matcher rows, subject indexes) held in numpy arrays, not Python objects.

A gallery of 100k templates held its template and subject ids as Python
strings in lists and dicts: ~180 bytes a template (the string, a dict entry, a
boxed row number, a list slot), ~31 MB at 100k and ~300 MB at 1M (issue 16).
:class:`IdTable` keeps them in three arrays instead:

* ``names``: slot -> the id's UTF-8 bytes, one fixed-width ``S<w>`` array
  (``w`` is the longest id seen; an empty entry is a free slot);
* ``hashes`` (sorted) and ``slots``: a 64-bit FNV-1a hash of each used slot's
  id, sorted, and the slot it belongs to. An id is found by binary search on
  its hash and confirmed by comparing the bytes (a collision costs a scan of
  the equal hashes, never a wrong answer).

About 48 bytes a 36-character template id. Lookups and inserts are
vectorised over a batch; an insert shifts the sorted arrays once per batch
(O(n) memmove), a removal rewrites them (O(n)): removals are rare (erasure).
Ids must not end in NUL bytes (``S`` arrays strip them; ids are checked
printable text). Not thread-safe: the matcher's lock guards it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)
_NONE = np.int32(-1)


def _encode(ids: Sequence[str]) -> npt.NDArray[np.bytes_]:
    return np.array([i.encode() for i in ids], dtype=np.bytes_)


def _hash(keys: npt.NDArray[np.bytes_]) -> npt.NDArray[np.uint64]:
    """FNV-1a of each key's bytes (padding NULs skipped: the hash does not depend on the width)."""
    width = keys.dtype.itemsize
    raw = keys.view(np.uint8).reshape(keys.size, width) if keys.size else np.zeros((0, 1), np.uint8)
    h = np.full(keys.size, _FNV_OFFSET, np.uint64)
    for col in range(raw.shape[1]):
        b = raw[:, col]
        h = np.where(b != 0, (h ^ b.astype(np.uint64)) * _FNV_PRIME, h)
    return h


class IdTable:
    """Slot <-> id over numpy arrays (see module doc)."""

    def __init__(self) -> None:
        self._names = np.zeros(0, "S1")
        self._hashes = np.zeros(0, np.uint64)
        self._slots = np.zeros(0, np.int32)

    def __len__(self) -> int:
        """Number of slots holding an id."""
        return int(self._hashes.size)

    @property
    def nbytes(self) -> int:
        """Bytes of the three arrays (the memory this table costs)."""
        return int(self._names.nbytes + self._hashes.nbytes + self._slots.nbytes)

    def reserve(self, slots: int) -> None:
        """Make room for slots ``[0, slots)`` (pages are only touched when written)."""
        if slots > self._names.size:
            grown = np.zeros(slots, self._names.dtype)
            grown[: self._names.size] = self._names
            self._names = grown

    def name(self, slot: int) -> str:
        """The id in ``slot`` (which must hold one)."""
        return bytes(self._names[slot]).decode()

    def names(self, slots: npt.NDArray[np.intp]) -> list[str]:
        return [bytes(b).decode() for b in self._names[slots].tolist()]

    def find(self, ids: Sequence[str]) -> npt.NDArray[np.int32]:
        """The slot of each of ``ids``, -1 where absent."""
        keys = _encode(ids)
        h = _hash(keys)
        pos = np.searchsorted(self._hashes, h)
        inside = np.minimum(pos, max(self._hashes.size - 1, 0))
        hit = (pos < self._hashes.size) & (self._hashes[inside] == h) if self._hashes.size else (
            np.zeros(len(ids), bool))
        out = np.full(len(ids), _NONE, np.int32)
        if not hit.any():
            return out
        cand = self._slots[inside[hit]]
        same = self._names[cand] == keys[hit]
        out[np.flatnonzero(hit)[same]] = cand[same]
        for j in np.flatnonzero(hit)[~same].tolist():
            # Another id with the same 64-bit hash sorts first: scan the run of equal hashes.
            p = int(pos[j])
            while p < self._hashes.size and self._hashes[p] == h[j]:
                if self._names[self._slots[p]] == keys[j]:
                    out[j] = self._slots[p]
                    break
                p += 1
        return out

    def insert(self, ids: Sequence[str], slots: npt.NDArray[np.integer]) -> None:
        """Put ``ids`` (distinct, absent) into the free ``slots`` (one each)."""
        if not ids:
            return
        keys = _encode(ids)
        if keys.dtype.itemsize > self._names.dtype.itemsize:
            self._names = self._names.astype(keys.dtype)
        top = int(np.max(slots)) + 1
        if top > self._names.size:
            self.reserve(max(top, 2 * self._names.size, 1024))
        self._names[slots] = keys
        h = _hash(keys)
        order = np.argsort(h, kind="stable")
        h, s = h[order], np.asarray(slots, np.int32)[order]
        at = np.searchsorted(self._hashes, h)
        self._hashes = np.insert(self._hashes, at, h)
        self._slots = np.insert(self._slots, at, s)

    def remove(self, slots: npt.NDArray[np.integer] | Sequence[int]) -> None:
        """Free ``slots`` (each holding an id)."""
        keep = ~np.isin(self._slots, np.asarray(slots, np.int32))
        self._hashes, self._slots = self._hashes[keep], self._slots[keep]
        self._names[np.asarray(slots, np.intp)] = b""

    def move(self, src: int, dst: int) -> None:
        """The id in slot ``src`` moves to the free slot ``dst`` (``src`` becomes free)."""
        self._names[dst] = self._names[src]
        self._names[src] = b""
        self._slots[self._slots == src] = dst

    def compact(self, keep: npt.NDArray[np.bool_]) -> None:
        """Slots ``[0, keep.size)``: drop those not kept and renumber the rest densely, in order."""
        n = keep.size
        new_of_old = np.cumsum(keep, dtype=np.int64) - 1
        kept = int(new_of_old[-1]) + 1 if n else 0
        self._names[:kept] = self._names[:n][keep]
        self._names[kept:n] = b""
        live = keep[self._slots]
        self._hashes = self._hashes[live]
        self._slots = new_of_old[self._slots[live]].astype(np.int32)

    def clear(self) -> None:
        self._names[:] = b""
        self._hashes = np.zeros(0, np.uint64)
        self._slots = np.zeros(0, np.int32)
