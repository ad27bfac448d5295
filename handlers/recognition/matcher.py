"""The 1:N matcher: every enrolled template in one contiguous matrix.

Layout. Templates are rows of one float32 matrix (L2-normalised, so a dot
product is the cosine) plus a parallel int8 copy (stored offset-binary as
uint8, zero point 128). Capacity grows by doubling, so enrolment is amortised
O(d) with no rebuild; removal swaps the last row into the hole (O(d) per
row). A subject may own several templates; its score is the max over them.

Search. Below ``int8_min_rows`` rows the float32 matrix is scanned exactly
with one BLAS GEMV. Above it, the int8 matrix is scanned with onnxruntime's
``MatMulInteger`` (4x less memory traffic than float32, which is what a
1M-row scan is bound by), the best ``BLOCK``-row blocks are kept by their
block maximum, the best ``CANDIDATES`` rows within them are re-scored exactly
in float32, and subjects are ranked on those exact scores. Approximation can
only miss a row whose int8 score fell out of the candidates; the bench
measures recall@1 against exact search (``facegate bench``).

Concurrency. One lock serialises search and mutation: a search sees the
gallery either before or after an enrolment, never half of it, and a subject
is unmatchable the moment :meth:`Matcher.remove_subject` returns. Search is
blocking (milliseconds at 1M rows): async callers run it in a thread.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
from onnx import TensorProto, helper

from ...drivers.models.registry import check_same_model
from .errors import GalleryError

BLOCK = 256
BLOCKS_KEPT = 16
CANDIDATES = 64


@dataclass(frozen=True, slots=True)
class Match:
    """The best template of one subject and its exact cosine score."""

    subject_id: str
    template_id: str
    score: float


@dataclass(frozen=True, slots=True)
class SearchResult:
    """Up to k subjects, best first, with exact scores. Never contains an embedding."""

    matches: tuple[Match, ...]
    subjects: int
    templates: int

    @property
    def best(self) -> Match | None:
        return self.matches[0] if self.matches else None

    @property
    def runner_up(self) -> Match | None:
        return self.matches[1] if len(self.matches) > 1 else None


def _int8_session(threads: int) -> ort.InferenceSession:
    node = helper.make_node("MatMulInteger", ["A", "B", "azp"], ["Y"])
    graph = helper.make_graph(
        [node],
        "gallery_scan",
        [
            helper.make_tensor_value_info("A", TensorProto.UINT8, ["N", "D"]),
            helper.make_tensor_value_info("B", TensorProto.INT8, ["D", 1]),
        ],
        [helper.make_tensor_value_info("Y", TensorProto.INT32, ["N", 1])],
        initializer=[helper.make_tensor("azp", TensorProto.UINT8, [], [128])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    model.ir_version = 10
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


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
        self._n = 0
        cap = self._round_cap(initial_capacity)
        self._f32 = np.zeros((cap, dim), np.float32)
        self._q8 = np.full((cap, dim), 128, np.uint8)
        self._row_subject: list[str] = []
        self._row_template: list[str] = []
        self._template_row: dict[str, int] = {}
        self._subject_rows: dict[str, set[int]] = {}
        self._session: ort.InferenceSession | None = None

    @staticmethod
    def _round_cap(n: int) -> int:
        return max(BLOCK, -(-n // BLOCK) * BLOCK)

    # -- size -------------------------------------------------------------
    def __len__(self) -> int:
        """Number of templates (rows)."""
        return self._n

    @property
    def subject_count(self) -> int:
        """Number of distinct subjects (the N of the N x FMR threshold rule)."""
        return len(self._subject_rows)

    def has_subject(self, subject_id: str) -> bool:
        return subject_id in self._subject_rows

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
        q = np.clip(np.rint(arr * self._qscale), -127, 127).astype(np.int8)
        return np.asarray(q.view(np.uint8) ^ np.uint8(0x80), dtype=np.uint8)

    def _ensure(self, rows: int) -> None:
        need = self._n + rows
        cap = self._f32.shape[0]
        if need <= cap:
            return
        new_cap = self._round_cap(max(need, cap * 2))
        f32 = np.zeros((new_cap, self.dim), np.float32)
        q8 = np.full((new_cap, self.dim), 128, np.uint8)
        f32[: self._n] = self._f32[: self._n]
        q8[: self._n] = self._q8[: self._n]
        self._f32, self._q8 = f32, q8

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
        """Enrol many templates at once (start-up load). All-or-nothing."""
        check_same_model(model_id, self.model_id)
        n = len(subject_ids)
        if n != len(template_ids) or n != (embeddings.shape[0] if embeddings.ndim > 1 else 1):
            raise GalleryError("subject_ids, template_ids and embeddings differ in length")
        if n == 0:
            return
        arr = self._normalised(embeddings, n)
        q = self._quantise(arr)
        with self._lock:
            seen: set[str] = set()
            for tid in template_ids:
                if tid in self._template_row or tid in seen:
                    raise GalleryError(f"template {tid} is already enrolled")
                seen.add(tid)
            self._ensure(n)
            start = self._n
            self._f32[start : start + n] = arr
            self._q8[start : start + n] = q
            for i, (sid, tid) in enumerate(zip(subject_ids, template_ids, strict=True)):
                row = start + i
                self._row_subject.append(sid)
                self._row_template.append(tid)
                self._template_row[tid] = row
                self._subject_rows.setdefault(sid, set()).add(row)
            self._n = start + n

    def _remove_row(self, row: int) -> None:
        last = self._n - 1
        sid, tid = self._row_subject[row], self._row_template[row]
        self._subject_rows[sid].discard(row)
        if not self._subject_rows[sid]:
            del self._subject_rows[sid]
        del self._template_row[tid]
        if row != last:
            msid, mtid = self._row_subject[last], self._row_template[last]
            self._f32[row] = self._f32[last]
            self._q8[row] = self._q8[last]
            self._row_subject[row], self._row_template[row] = msid, mtid
            self._template_row[mtid] = row
            rows = self._subject_rows[msid]
            rows.discard(last)
            rows.add(row)
        self._f32[last] = 0.0
        self._q8[last] = 128
        self._row_subject.pop()
        self._row_template.pop()
        self._n = last

    def remove_subject(self, subject_id: str) -> int:
        """Remove every template of ``subject_id``; returns how many. Unmatchable on return."""
        with self._lock:
            rows = sorted(self._subject_rows.get(subject_id, ()), reverse=True)
            for row in rows:
                # Descending order: a swapped-in last row is never one still to remove.
                self._remove_row(row)
            return len(rows)

    def remove_template(self, template_id: str) -> bool:
        """Remove one template; False when it was not enrolled."""
        with self._lock:
            row = self._template_row.get(template_id)
            if row is None:
                return False
            self._remove_row(row)
            return True

    def clear(self) -> None:
        """Forget every template (teardown)."""
        with self._lock:
            self._f32[: self._n] = 0.0
            self._q8[: self._n] = 128
            self._n = 0
            self._row_subject.clear()
            self._row_template.clear()
            self._template_row.clear()
            self._subject_rows.clear()

    # -- search -----------------------------------------------------------
    def _candidates(self, q: npt.NDArray[np.float32]) -> npt.NDArray[np.intp]:
        if self._session is None:
            self._session = _int8_session(self._threads)
        padded = self._round_cap(self._n)
        qi = np.clip(np.rint(q * self._qscale), -127, 127).astype(np.int8).reshape(-1, 1)
        y = self._session.run(None, {"A": self._q8[:padded], "B": qi})[0].reshape(-1)
        block_max = y.reshape(-1, BLOCK).max(axis=1)
        keep = min(BLOCKS_KEPT, block_max.size)
        blocks = np.argpartition(block_max, -keep)[-keep:]
        rows = (blocks[:, None] * BLOCK + np.arange(BLOCK)).ravel()
        rows = rows[rows < self._n]
        take = min(CANDIDATES, rows.size)
        return np.asarray(rows[np.argpartition(y[rows], -take)[-take:]], dtype=np.intp)

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
                rows = self._candidates(q)
                scores = self._f32[rows] @ q
            else:
                all_scores = self._f32[:n] @ q
                take = min(n, CANDIDATES)
                rows = np.argpartition(all_scores, -take)[-take:]
                scores = all_scores[rows]
            order = np.argsort(-scores, kind="stable")
            matches: list[Match] = []
            seen: set[str] = set()
            for j in order:
                row = int(rows[j])
                sid = self._row_subject[row]
                if sid in seen:
                    continue
                seen.add(sid)
                matches.append(Match(sid, self._row_template[row], float(scores[j])))
                if len(matches) >= k:
                    break
            if len(matches) < k and n > rows.size and n < self.int8_min_rows:
                matches = self._exact_by_subject(q, k)
            return SearchResult(matches=tuple(matches), subjects=len(self._subject_rows),
                                templates=n)

    def _exact_by_subject(self, q: npt.NDArray[np.float32], k: int) -> list[Match]:
        # Rare path: the top rows all belong to fewer than k subjects.
        scores = self._f32[: self._n] @ q
        best: dict[str, tuple[float, int]] = {}
        for row, s in enumerate(scores.tolist()):
            sid = self._row_subject[row]
            if sid not in best or s > best[sid][0]:
                best[sid] = (s, row)
        ranked = sorted(best.items(), key=lambda kv: -kv[1][0])[:k]
        return [Match(sid, self._row_template[row], s) for sid, (s, row) in ranked]

    def exact_scores(self, embedding: npt.NDArray[np.floating]) -> npt.NDArray[np.float32]:
        """Cosine against every row (bench/recall reference); row order is internal."""
        q = self._normalised(embedding, 1)[0]
        with self._lock:
            return np.asarray(self._f32[: self._n] @ q, dtype=np.float32)
