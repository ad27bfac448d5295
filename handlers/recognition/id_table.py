"""Ids of dense slots (matcher rows, subject indexes) held in numpy arrays, not Python objects.

A gallery of 100k templates held its template and subject ids as Python
strings in lists and dicts: ~180 bytes a template (the string, a dict entry, a
boxed row number, a list slot), ~31 MB at 100k and ~300 MB at 1M (issue 16).
:class:`IdTable` keeps them in three arrays instead:

* ``names``: slot -> the id's UTF-8 bytes, one fixed-width ``S<w>`` array
  (``w`` is the longest id seen; an empty entry is a free slot);
* ``hashes`` (sorted) and ``slots``: a 64-bit hash of each used slot's id
  (FNV-1a over 8-byte words), sorted, and the slot it belongs to. An id is found by binary search on
  its hash and confirmed by comparing the bytes (a collision costs a scan of
  the equal hashes, never a wrong answer).

About 48 bytes a 36-character template id. Lookups and inserts are
vectorised over a batch. The sorted pairs are two runs: inserts go into a
small recent run (at most ``RECENT`` entries) that is merged into the main run
when full, so a bulk load shifts the main arrays every ``RECENT`` ids, not
every batch (a 1M load: ~15 merges instead of ~500 shifts of the whole
index). A removal rewrites both (O(n)): removals are rare (erasure).
Ids must hold no NUL byte (``S`` arrays strip trailing ones and the hash skips
zero words; ids are checked printable text). Not thread-safe: the matcher's lock guards it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)
_NONE = np.int32(-1)
#: Entries of the recent run before it is merged into the main run.
RECENT = 65_536


Keys = npt.NDArray[np.bytes_]


def encode(ids: Sequence[str]) -> Keys:
    """``ids`` as UTF-8 keys (an ``S`` array): encode once, then find and insert by key."""
    text = np.array(ids, dtype=np.str_)
    try:
        return text.astype(np.bytes_)  # ASCII ids (every storage id): one vectorised cast
    except UnicodeEncodeError:
        return np.array([i.encode() for i in ids], dtype=np.bytes_)


def _hash(keys: Keys) -> npt.NDArray[np.uint64]:
    """A 64-bit hash of each key, FNV-1a over 8-byte words (5 vector steps for a 36-byte id).

    All-zero words are skipped: ids hold no NUL byte, so only the padding is zero and
    the hash does not depend on the array's width.
    """
    width = -(-keys.dtype.itemsize // 8) * 8
    padded = np.zeros(keys.size, f"S{width}")
    padded[:] = keys
    words = padded.view(np.uint64).reshape(keys.size, width // 8)
    h = np.full(keys.size, _FNV_OFFSET, np.uint64)
    for col in range(words.shape[1]):
        w = words[:, col]
        mixed = (h ^ w) * _FNV_PRIME
        h = np.where(w != 0, mixed ^ (mixed >> np.uint64(29)), h)
    return h


class _Run:
    """Sorted 64-bit hashes and the slot of each (one run of the index)."""

    __slots__ = ("hashes", "slots")

    def __init__(self) -> None:
        self.hashes = np.zeros(0, np.uint64)
        self.slots = np.zeros(0, np.int32)

    def lookup(self, h: npt.NDArray[np.uint64], keys: Keys, names: Keys,
               out: npt.NDArray[np.int32]) -> None:
        """Fill ``out`` (-1 entries only) with the slot of each key found in this run."""
        size = self.hashes.size
        todo = np.flatnonzero(out < 0)
        if not size or not todo.size:
            return
        hq = h[todo]
        # Sorted needles: numpy's binary search starts from the previous hit (cache-friendly).
        order = np.argsort(hq)
        pos = np.empty(hq.size, np.intp)
        pos[order] = np.searchsorted(self.hashes, hq[order])
        inside = np.minimum(pos, size - 1)
        hit = (pos < size) & (self.hashes[inside] == hq)
        cand = self.slots[inside[hit]]
        same = names[cand] == keys[todo[hit]]
        out[todo[hit][same]] = cand[same]
        for j in np.flatnonzero(hit)[~same].tolist():
            # Another id with the same 64-bit hash sorts first: scan the run of equal hashes.
            p = int(pos[j])
            while p < size and self.hashes[p] == hq[j]:
                if names[self.slots[p]] == keys[todo[j]]:
                    out[todo[j]] = self.slots[p]
                    break
                p += 1

    def add(self, h: npt.NDArray[np.uint64], slots: npt.NDArray[np.int32]) -> None:
        """Merge sorted ``h`` (with their ``slots``) into the run."""
        at = np.searchsorted(self.hashes, h)
        self.hashes = np.insert(self.hashes, at, h)
        self.slots = np.insert(self.slots, at, slots)

    def keep(self, mask: npt.NDArray[np.bool_]) -> None:
        self.hashes, self.slots = self.hashes[mask], self.slots[mask]

    def delete(self, at: npt.NDArray[np.intp]) -> None:
        """Drop the entries at positions ``at`` in place: the stretches between them move
        down (a new array, or a boolean mask, costs ~5-8 ms at 1M in fresh pages)."""
        at = np.unique(at)
        size, write = self.hashes.size, int(at[0])
        for i, pos in enumerate(at.tolist()):
            nxt = int(at[i + 1]) if i + 1 < at.size else size
            span = nxt - pos - 1
            self.hashes[write : write + span] = self.hashes[pos + 1 : nxt]
            self.slots[write : write + span] = self.slots[pos + 1 : nxt]
            write += span
        self.hashes, self.slots = self.hashes[:write], self.slots[:write]

    def positions(self, h: npt.NDArray[np.uint64], slots: npt.NDArray[np.int32]) -> npt.NDArray[np.intp]:
        """Index in this run of each (hash, slot) entry, -1 where the run does not hold it:
        O(k log n), where a scan of ``slots`` would be O(n) per call (1M rows: ~5 ms)."""
        size = self.hashes.size
        out = np.full(h.size, -1, np.intp)
        if not size or not h.size:
            return out
        pos = np.searchsorted(self.hashes, h)
        inside = np.minimum(pos, size - 1)
        hit = (pos < size) & (self.hashes[inside] == h)
        direct = hit & (self.slots[inside] == slots)
        out[direct] = pos[direct]
        for j in np.flatnonzero(hit & ~direct).tolist():
            p = int(pos[j])  # equal hashes (another id, or this one further on): scan them
            while p < size and self.hashes[p] == h[j]:
                if self.slots[p] == slots[j]:
                    out[j] = p
                    break
                p += 1
        return out


class IdTable:
    """Slot <-> id over numpy arrays (see module doc)."""

    def __init__(self) -> None:
        self._names = np.zeros(0, "S1")
        self._main = _Run()
        self._recent = _Run()

    def __len__(self) -> int:
        """Number of slots holding an id."""
        return int(self._main.hashes.size + self._recent.hashes.size)

    @property
    def nbytes(self) -> int:
        """Bytes of the arrays (the memory this table costs)."""
        runs = (self._main, self._recent)
        return int(self._names.nbytes + sum(r.hashes.nbytes + r.slots.nbytes for r in runs))

    def reserve(self, slots: int) -> None:
        """Make room for slots ``[0, slots)`` (pages are only touched when written)."""
        if slots > self._names.size:
            grown = np.zeros(slots, self._names.dtype)
            grown[: self._names.size] = self._names
            self._names = grown

    def name(self, slot: int) -> str:
        """The id in ``slot`` (which must hold one)."""
        return bytes(self._names[slot]).decode()

    def find(self, ids: Sequence[str]) -> npt.NDArray[np.int32]:
        """The slot of each of ``ids``, -1 where absent."""
        return self.find_keys(encode(ids))

    def find_keys(self, keys: Keys) -> npt.NDArray[np.int32]:
        """:meth:`find` of keys from :func:`encode`."""
        h = _hash(keys)
        out = np.full(keys.size, _NONE, np.int32)
        self._main.lookup(h, keys, self._names, out)
        self._recent.lookup(h, keys, self._names, out)
        return out

    def insert(self, ids: Sequence[str], slots: npt.NDArray[np.integer]) -> None:
        """Put ``ids`` (distinct, absent) into the free ``slots`` (one each)."""
        self.insert_keys(encode(ids), slots)

    def insert_keys(self, keys: Keys, slots: npt.NDArray[np.integer]) -> None:
        """:meth:`insert` of keys from :func:`encode`."""
        if not keys.size:
            return
        if keys.dtype.itemsize > self._names.dtype.itemsize:
            self._names = self._names.astype(keys.dtype)
        top = int(np.max(slots)) + 1
        if top > self._names.size:
            self.reserve(max(top, 2 * self._names.size, 1024))
        self._names[slots] = keys
        h = _hash(keys)
        order = np.argsort(h, kind="stable")
        self._recent.add(h[order], np.asarray(slots, np.int32)[order])
        if self._recent.hashes.size > RECENT:
            self._main.add(self._recent.hashes, self._recent.slots)
            self._recent = _Run()

    def _located(self, slots: npt.NDArray[np.int32]) -> list[tuple[_Run, npt.NDArray[np.intp]]]:
        """Each run with the positions of the entries of ``slots`` it holds."""
        h = _hash(self._names[slots.astype(np.intp)])
        out = []
        for run in (self._main, self._recent):
            at = run.positions(h, slots)
            out.append((run, at[at >= 0]))
        return out

    def remove(self, slots: npt.NDArray[np.integer] | Sequence[int]) -> None:
        """Free ``slots`` (each holding an id). One pass over the index, whatever their number."""
        gone = np.atleast_1d(np.asarray(slots, np.int32))
        for run, at in self._located(gone):
            if at.size:
                run.delete(at)
        self._names[gone.astype(np.intp)] = b""

    def move(self, src: npt.NDArray[np.integer] | Sequence[int],
             dst: npt.NDArray[np.integer] | Sequence[int]) -> None:
        """The id in each slot of ``src`` moves to the free slot at the same place in ``dst``
        (the ``src`` slots become free; no slot is in both)."""
        s, d = np.atleast_1d(np.asarray(src, np.int32)), np.atleast_1d(np.asarray(dst, np.int32))
        if not s.size:
            return
        order = np.argsort(s)  # positions are found per run: keep each entry's destination
        s, d = s[order], d[order]
        h = _hash(self._names[s.astype(np.intp)])
        for run in (self._main, self._recent):
            at = run.positions(h, s)
            found = at >= 0
            run.slots[at[found]] = d[found]
        self._names[d.astype(np.intp)] = self._names[s.astype(np.intp)]
        self._names[s.astype(np.intp)] = b""

    def compact(self, keep: npt.NDArray[np.bool_]) -> None:
        """Slots ``[0, keep.size)``: drop those not kept and renumber the rest densely, in order."""
        n = keep.size
        new_of_old = np.cumsum(keep, dtype=np.int64) - 1
        kept = int(new_of_old[-1]) + 1 if n else 0
        self._names[:kept] = self._names[:n][keep]
        self._names[kept:n] = b""
        for run in (self._main, self._recent):
            run.keep(keep[run.slots])
            run.slots = new_of_old[run.slots].astype(np.int32)

    def clear(self) -> None:
        self._names[:] = b""
        self._main, self._recent = _Run(), _Run()
