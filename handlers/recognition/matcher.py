"""The 1:N matcher: every enrolled template in one contiguous matrix.

Layout. Templates are rows of one float16 matrix (L2-normalised; a stored
component differs from the float32 one by at most 2^-11 of itself, so a
re-ranked cosine is within 2^-11 < 5e-4 of the float32 cosine, by
Cauchy-Schwarz; tested) plus a parallel int8 copy (offset-binary uint8, zero
point 128). Capacity grows by doubling, so enrolment is amortised O(d) with no
rebuild; removal swaps the last row into the hole (O(d) per row). A subject
may own several templates; its score is the max over them.

Search. Below ``int8_min_rows`` rows every row is scored exactly. Above it an
approximate scan (scan.py: 4-bit prepacked segments on every CPU; int8 when
forced) scores every row with its own error bound, the shortlist (shortlist.py) keeps
every row that could belong to an exact top-k subject, and those rows are
re-scored exactly; subjects are ranked on the exact scores. The bench measures
recall@1 and runner-up agreement against :meth:`Matcher.exact_search`.

Ids. A row's subject is an int32 index into a table of subject ids, and a
row's template id sits in a table of template ids at the row's own slot: both
tables are numpy arrays (id_table.py), with no per-row or per-subject Python
string, dict entry or int (a 100k gallery's ids: ~10 MB of RSS instead of ~32 MB;
issue 16). A subject's rows are found with one vectorised compare when it is
removed.

Concurrency. One lock serialises search and mutation: a search sees the
gallery either before or after an enrolment, never half of it, and a subject
is unmatchable the moment :meth:`Matcher.remove_subject` returns. Search is
blocking (milliseconds at 1M rows): async callers run it in a thread. No
mutation and no search builds a scan session: rows a change leaves pending
are scored exactly, and :meth:`Matcher.pack` (a worker thread; the gallery's
live sink calls it) re-packs them holding the lock only to copy and install.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Sequence

import numpy as np
import numpy.typing as npt

from ...drivers.models.registry import check_same_model
from .errors import GalleryError
from .id_table import IdTable, encode
from .matches import Match, SearchResult
from .scan import GalleryScan
from .shortlist import BLOCK, NO_SUBJECT, round_rows, shortlist
from .subject_ids import SubjectIds

__all__ = ["BLOCK", "Match", "Matcher", "SearchResult"]

#: Rows taken first when ranking exact scores; more when they cover fewer than k subjects.
CANDIDATES = 128
_NO_SUBJECT = NO_SUBJECT
_COMPACT_CHUNK = 65_536
#: Rows converted from float16 at a time for an exact scan (a 4 MB float32 temporary).
_DOT_CHUNK = 8192
#: Pending rows (scored exactly, ~1 ms per 1,000 at 1M) before :attr:`Matcher.needs_pack` says so.
PACK_AFTER = 2048
#: Bulk removals up to this many rows swap rows in (pending rows) instead of compacting (segments).
_SWAP_MAX = 2048
_PACK_ROUNDS = 64


class Matcher:
    """1:N search over templates of one model (see module docstring)."""

    def __init__(
        self,
        model_id: str,
        dim: int,
        *,
        int8_min_rows: int = 16_384,
        threads: int = 2,
        initial_capacity: int = 1024,
        prepack: bool | None = None,
    ) -> None:
        if dim < 1:
            raise ValueError("dim must be positive")
        self.model_id = model_id
        self.dim = dim
        self.int8_min_rows = int8_min_rows
        self._threads = threads
        # Components of a unit vector are ~N(0, 1/d); 5 sigma maps to 127.
        self._qscale = 127.0 * math.sqrt(dim) / 5.0
        self._lock = threading.RLock()
        self._packer = threading.Lock()
        self._n = 0
        cap = self._round_cap(initial_capacity)
        self._row_sid = np.full(cap, _NO_SUBJECT, np.int32)
        self._tids = IdTable()  # slot = row
        self._tids.reserve(cap)
        self._ids = SubjectIds()
        # Kernel (scan.py): 4-bit prepacked segments, measured faster than dynamic int8 with
        # and without VNNI; prepack=False forces the int8 kernel (tests).
        self._scan = GalleryScan(threads, self._qscale, pack=prepack)
        self._f16 = np.zeros((cap, dim), np.float16)
        # The int8 copy feeds the dynamic kernel only: with packed segments it has no
        # columns (every write to it stays valid, and it costs nothing).
        self._qdim = 0 if self._scan.packs else dim
        self._q8 = np.full((cap, self._qdim), 128, np.uint8)

    @staticmethod
    def _round_cap(n: int) -> int:
        return round_rows(n)

    # -- size -------------------------------------------------------------
    def __len__(self) -> int:
        """Number of templates (rows)."""
        return self._n

    @property
    def subject_count(self) -> int:
        """Number of distinct subjects (the N of the N x FMR threshold rule)."""
        return len(self._ids)

    def has_subject(self, subject_id: str) -> bool:
        return subject_id in self._ids

    @property
    def kernel(self) -> str:
        """The scan that runs at the current size on this CPU (reported by the benches)."""
        if self._n < self.int8_min_rows:
            return "exact: float16 rows widened to float32, BLAS GEMV"
        return f"{self._scan.kernel} + exact re-rank (float16 rows) of the bounded shortlist"

    # -- mutation ---------------------------------------------------------
    def _normalised(self, emb: npt.NDArray[np.floating], rows: int) -> npt.NDArray[np.float32]:
        arr = np.asarray(emb, dtype=np.float32).reshape(rows, -1)
        if arr.shape[1] != self.dim:
            raise GalleryError(f"embedding has {arr.shape[1]} dims, the model has {self.dim}")
        if not np.all(np.isfinite(arr)):
            raise GalleryError("embedding contains NaN or infinity")
        norms = np.linalg.norm(arr, axis=1, keepdims=True)
        if np.any(norms < 1e-6):
            raise GalleryError("embedding is the zero vector")
        return np.asarray(arr / norms, dtype=np.float32)

    def _quantise(self, arr: npt.NDArray[np.float32]) -> npt.NDArray[np.uint8]:
        q = np.clip(np.rint(arr[:, : self._qdim] * self._qscale), -127, 127).astype(np.int8)
        return np.asarray(q.view(np.uint8) ^ np.uint8(0x80), dtype=np.uint8)

    def _ensure(self, rows: int, *, exact: bool = False) -> None:
        need = self._n + rows
        cap = self._f16.shape[0]
        if need <= cap:
            return
        new_cap = self._round_cap(need if exact else max(need, cap * 2))
        # np.zeros/np.empty map fresh pages lazily: only rows written cost memory.
        f16 = np.zeros((new_cap, self.dim), np.float16)
        q8 = np.empty((new_cap, self._qdim), np.uint8)
        row_sid = np.full(new_cap, _NO_SUBJECT, np.int32)
        f16[: self._n] = self._f16[: self._n]
        q8[: self._n] = self._q8[: self._n]
        row_sid[: self._n] = self._row_sid[: self._n]
        self._f16, self._q8, self._row_sid = f16, q8, row_sid
        self._tids.reserve(new_cap)

    def add(
        self, subject_id: str, template_id: str, embedding: npt.NDArray[np.floating], model_id: str
    ) -> None:
        """Enrol one template. Raises TemplateModelMismatch or GalleryError; no partial add."""
        self.add_batch([subject_id], [template_id], np.asarray(embedding)[None], model_id)

    def add_batch(
        self,
        subject_ids: Sequence[str],
        template_ids: Sequence[str],
        embeddings: npt.NDArray[np.floating],
        model_id: str,
    ) -> None:
        """Enrol many templates at once (start-up load). All-or-nothing; O(rows), no packing:
        the new rows are scored exactly until :meth:`pack` or :meth:`prepare`."""
        check_same_model(model_id, self.model_id)
        n = len(subject_ids)
        if n != len(template_ids) or n != (embeddings.shape[0] if embeddings.ndim > 1 else 1):
            raise GalleryError("subject_ids, template_ids and embeddings differ in length")
        if n == 0:
            return
        arr = self._normalised(embeddings, n)
        q = self._quantise(arr)
        tids = list(template_ids)
        with self._lock:
            tkeys = encode(tids)
            enrolled = self._tids.find_keys(tkeys) >= 0
            if len(set(tids)) != n or enrolled.any():
                dup = next(t for i, t in enumerate(tids) if enrolled[i] or t in tids[:i])
                raise GalleryError(f"template {dup} is already enrolled")
            self._ensure(n)
            start = self._n
            self._f16[start : start + n] = arr
            self._q8[start : start + n] = q
            rows_sid = self._ids.indexes(subject_ids)  # bulk dict operations, no per-row Python
            self._row_sid[start : start + n] = rows_sid
            self._ids.add_rows(rows_sid)
            self._tids.insert_keys(tkeys, np.arange(start, start + n, dtype=np.int32))
            self._n = start + n
            self._resized()
            self._scan.appended(start, start + n)

    def _resized(self) -> None:
        if self._n >= self.int8_min_rows:
            self._scan.resize(self._n)
        else:
            self._scan.clear()

    def prepare(self) -> None:
        """Pack every pending row now, holding the lock (after a bulk load, before searches)."""
        with self._lock:
            if self._n >= self.int8_min_rows:
                self._scan.pack_pending(self._f16)

    @property
    def needs_pack(self) -> bool:
        """Enough rows are scored exactly that :meth:`pack` is worth its cost."""
        with self._lock:
            return self._n >= self.int8_min_rows and self._scan.pending >= PACK_AFTER

    def pack(self) -> None:
        """Re-pack every pending row, building each segment's session without the lock, so
        searches go on meanwhile (they score pending rows exactly). Blocking: a worker thread.
        One packer at a time; a segment changed while it was built is built again."""
        with self._packer:
            for _ in range(_PACK_ROUNDS):
                with self._lock:
                    job = self._scan.snapshot(self._f16) if self._n >= self.int8_min_rows else None
                if job is None:
                    return
                built = self._scan.build(job)
                with self._lock:
                    self._scan.install(built)

    def reserve(self, rows: int) -> None:
        """Allocate room for ``rows`` more templates at once (the start-up load knows its size).

        Growing by doubling during a load holds the old and the new matrices at
        the same time; one exact allocation keeps peak memory at the gallery's size.
        """
        if rows > 0:
            with self._lock:
                self._ensure(rows, exact=True)

    def _remove_rows(self, rows: npt.NDArray[np.intp]) -> None:
        """Remove ``rows`` (distinct, below n): the last rows that stay fill the holes below
        the new end. O(len(rows)) row copies and one pass over the id index."""
        n, k = self._n, int(rows.size)
        end = n - k
        for row in rows.tolist():
            self._ids.drop_row(int(self._row_sid[row]))
        self._tids.remove(rows)
        holes = np.sort(rows[rows < end])
        tail = np.arange(end, n, dtype=np.intp)
        movers = tail[~np.isin(tail, rows)]  # as many as holes
        if holes.size:
            self._f16[holes] = self._f16[movers]
            self._q8[holes] = self._q8[movers]
            self._row_sid[holes] = self._row_sid[movers]
            self._tids.move(movers, holes)
            for row in holes.tolist():
                self._scan.changed(row)  # pending until re-packed (the old tail leaves with n)
        self._f16[end:n] = 0.0
        self._q8[end:n] = 128
        self._row_sid[end:n] = _NO_SUBJECT
        self._n = end

    def remove_subject(self, subject_id: str) -> int:
        """Remove every template of ``subject_id``; returns how many. Unmatchable on return."""
        with self._lock:
            idx = self._ids.get(subject_id)
            if idx is None:
                return 0
            rows = np.flatnonzero(self._row_sid[: self._n] == idx)
            self._remove_rows(rows)
            self._resized()
            return int(rows.size)

    def remove_subjects(self, subject_ids: Iterable[str]) -> int:
        """Remove every template of many subjects in one pass (start-up checks); returns rows.

        Up to ``_SWAP_MAX`` rows are swapped out like :meth:`remove_subject` (each leaves
        one row pending); more are compacted in place chunk by chunk, so no copy of the
        gallery is made (every segment from the first dropped row is then pending).
        """
        with self._lock:
            idxs = sorted({i for s in subject_ids if (i := self._ids.get(s)) is not None})
            if not idxs:
                return 0
            n = self._n
            drop = np.isin(self._row_sid[:n], np.asarray(idxs, np.int32))
            rows = np.flatnonzero(drop)
            if rows.size <= _SWAP_MAX:
                self._remove_rows(rows)
                self._resized()
                return int(rows.size)
            write = 0
            for start in range(0, n, _COMPACT_CHUNK):
                keep = start + np.flatnonzero(~drop[start : start + _COMPACT_CHUNK])
                m = keep.size
                if m and (write != start or m != min(_COMPACT_CHUNK, n - start)):
                    self._f16[write : write + m] = self._f16[keep]
                    self._q8[write : write + m] = self._q8[keep]
                    self._row_sid[write : write + m] = self._row_sid[keep]
                write += m
            self._f16[write:n] = 0.0
            self._q8[write:n] = 128
            self._row_sid[write:n] = _NO_SUBJECT
            self._tids.compact(~drop)
            first = int(np.argmax(drop))  # rows before the first dropped one kept their index
            self._scan.invalidate_from(first)
            self._ids.drop_subjects(idxs)
            self._n = write
            self._resized()
            return n - write

    def remove_template(self, template_id: str) -> bool:
        """Remove one template; False when it was not enrolled."""
        with self._lock:
            row = int(self._tids.find([template_id])[0])
            if row < 0:
                return False
            self._remove_rows(np.asarray([row], np.intp))
            self._resized()
            return True

    def clear(self) -> None:
        """Forget every template (teardown)."""
        with self._lock:
            self._f16[: self._n] = 0.0
            self._q8[: self._n] = 128
            self._row_sid[: self._n] = _NO_SUBJECT
            self._n = 0
            self._tids.clear()
            self._ids.clear()
            self._scan.clear()

    # -- search -----------------------------------------------------------
    def _dot(self, start: int, end: int, q: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Exact cosines of rows ``[start, end)`` (float16 rows widened chunk by chunk)."""
        out = np.empty(end - start, np.float32)
        for s in range(start, end, _DOT_CHUNK):
            e = min(end, s + _DOT_CHUNK)
            np.matmul(self._f16[s:e].astype(np.float32), q, out=out[s - start : e - start])
        return out

    def _candidates(self, q: npt.NDArray[np.float32], k: int) -> npt.NDArray[np.intp]:
        padded = self._round_cap(self._n)
        self._q8[self._n : padded] = 128  # the block's tail scores 0 (rows past n may be unwritten)
        y, bound = self._scan.scores(self._f16, self._q8 if self._qdim else None, self._n, padded, q)
        return shortlist(y, bound, self._row_sid, self._n, k)

    def _rank(self, rows: npt.NDArray[np.intp], scores: npt.NDArray[np.float32],
              k: int) -> list[Match]:
        order = np.argsort(-scores, kind="stable")
        matches: list[Match] = []
        seen: set[int] = set()
        for j in order.tolist():
            row = int(rows[j])
            idx = int(self._row_sid[row])
            if idx in seen:
                continue
            seen.add(idx)
            score = min(1.0, float(scores[j]))  # float16 rows: a self-match may read 1 + 2^-12
            matches.append(Match(self._ids.name(idx), self._tids.name(row), score))
            if len(matches) >= k:
                break
        return matches

    def search(
        self, embedding: npt.NDArray[np.floating], k: int = 2, *, model_id: str | None = None
    ) -> SearchResult:
        """The best ``k`` distinct subjects for ``embedding`` (exact cosine scores)."""
        if model_id is not None:
            check_same_model(self.model_id, model_id)
        q = self._normalised(embedding, 1)[0]
        with self._lock:
            n = self._n
            if n == 0:
                return SearchResult(matches=(), subjects=0, templates=0)
            if n >= self.int8_min_rows:
                rows = self._candidates(q, k)
                matches = self._rank(rows, self._f16[rows].astype(np.float32) @ q, k)
            else:
                matches = self._exact_top(q, k)
            return SearchResult(matches=tuple(matches), subjects=len(self._ids), templates=n)

    def _exact_top(self, q: npt.NDArray[np.float32], k: int) -> list[Match]:
        # The first k distinct subjects of the top rows are the exact top k
        # subjects; widen until k are found (one subject may own many rows).
        all_scores = self._dot(0, self._n, q)
        take = min(self._n, CANDIDATES)
        while True:
            rows = np.asarray(np.argpartition(all_scores, -take)[-take:], dtype=np.intp)
            matches = self._rank(rows, all_scores[rows], k)
            if len(matches) >= k or take == self._n:
                return matches
            take = min(self._n, take * 4)

    def exact_search(self, embedding: npt.NDArray[np.floating], k: int = 2) -> SearchResult:
        """Exhaustive float32 search (the bench's and tests' reference for recall and runner-up)."""
        q = self._normalised(embedding, 1)[0]
        with self._lock:
            matches = self._exact_top(q, k) if self._n else []
            return SearchResult(matches=tuple(matches), subjects=len(self._ids), templates=self._n)

    def exact_scores(self, embedding: npt.NDArray[np.floating]) -> npt.NDArray[np.float32]:
        """Cosine against every row (bench/recall reference); row order is internal."""
        q = self._normalised(embedding, 1)[0]
        with self._lock:
            return self._dot(0, self._n, q)
