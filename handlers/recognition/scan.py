"""The approximate 1:N scan: a score for every gallery row, plus a bound on its error.

Kernels (reported by :attr:`GalleryScan.kernel`):

* ``nbits`` (the default on every CPU): the gallery is cut into segments of
  ``SEGMENT`` rows; each segment is the constant B of its own onnxruntime
  ``MatMulNBits`` session (com.microsoft): 4-bit codes, one float scale per
  ``NBITS_BLOCK`` components of a row (symmetric, zero point 8),
  ``accuracy_level=4`` (the query is quantised to int8 per block and MLAS runs
  the int8 kernel it picks at run time from the CPU features: AVX-512 VNNI,
  AVX-VNNI or AVX2). onnxruntime packs the constant B once at session
  creation, so a query streams 64 bytes + 16 bytes of scales per 128-d row
  instead of 128 bytes of int8: the scan is bound by memory bandwidth, and it
  reads ~60% of what the int8 scan reads. Measured faster than the int8 scan
  both without VNNI (Zen 3, issue 16 round 3) and with it (Zen 4: 1M rows
  ~2x), so it runs everywhere. Rows no session covers (enrolled since the
  last pack, moved by a removal) are scored exactly until the owner re-packs
  them (:meth:`GalleryScan.build` runs without the owner's lock).
* ``dynamic`` (``pack=False``; tests force it): one int8 ``MatMulInteger``
  over the row-major offset-binary uint8 matrix (N x d times d x 1).

``SEGMENT`` trades ``session.run`` calls per query (1M rows: 16) against the
cost of re-packing one segment (~0.1 s; docs/performance.md).

Scores are approximate cosines. :meth:`GalleryScan.scores` also returns their
:class:`~.scan_bound.ScanBound`: each row's own bound on |approximate - exact|,
holding except with a probability of the order of 1e-9 (scan_bound.py), and a
loose bound over all rows. The shortlist re-ranks exactly every row that could
be in the exact top-k, so the approximation can only lose a row whose error
exceeds its bound.

Packing never happens on a mutation's or a search's path: a mutation only
records which rows are *pending* (appended past a session's rows, or *stale*:
rewritten in place by a removal's swap), a scan scores those exactly, and the
owner re-packs them later: :meth:`GalleryScan.pack_pending` at start-up,
or :meth:`snapshot` (under its lock), :meth:`build` (without it) and
:meth:`install` (under it again; refused if a packed row was rewritten
meanwhile) from a worker thread while searches go on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from ...runtime.machine import cpu_features
from . import onnx_bytes as ob
from .onnx_bytes import Node, Value
from .scan_bound import NBITS_BLOCK, ScanBound, int8_bound, nbits_bound

SEGMENT = 65_536
_QMAX4 = 7
_QUANT_CHUNK = 4096
_EXACT_CHUNK = 8192
#: Bytes a packed session holds per block of a row: NBITS_BLOCK 4-bit codes and a float32 scale.
_BLOCK_BYTES = NBITS_BLOCK // 2 + 4


def _options(threads: int) -> ort.SessionOptions:
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    # One node per session: an arena or memory pattern would only hold memory.
    so.enable_cpu_mem_arena = False
    so.enable_mem_pattern = False
    so.log_severity_level = 3
    return so


def _model(node: Node, inputs: list[Value], out: Value,
           initializers: dict[str, npt.NDArray[np.generic]],
           external: dict[str, npt.NDArray[np.generic]] | None = None) -> bytes:
    # Written by onnx_bytes, not the onnx package: importing onnx costs ~27 MB of RSS (issue 16).
    return ob.model([node], inputs, [out], initializers, name="gallery_scan",
                    opsets={"": 21, "com.microsoft": 1}, ir_version=10, external=external)


def _session(model: bytes, threads: int) -> ort.InferenceSession:
    return ort.InferenceSession(model, _options(threads), providers=["CPUExecutionProvider"])


def dynamic_model() -> bytes:
    """The ``MatMulInteger`` scan graph: uint8 rows (N x D, zero point 128) times int8 query (D x 1)."""
    return _model(
        Node("MatMulInteger", ["A", "B", "azp"], ["Y"]),
        [Value("A", ob.UINT8, ["N", "D"]), Value("B", ob.INT8, ["D", 1])],
        Value("Y", ob.INT32, ["N", 1]),
        {"azp": np.array(128, np.uint8)},
    )


def nbits_model(packed: npt.NDArray[np.uint8], scales: npt.NDArray[np.float32]) -> bytes:
    """The ``MatMulNBits`` graph of one segment (``packed``, ``scales`` from :func:`quantise_4bit`).

    B and S are external placeholders: :func:`nbits_session` supplies their data.
    """
    n, nb, half = packed.shape
    d = nb * half * 2
    return _model(
        Node("MatMulNBits", ["A", "B", "S"], ["Y"], domain="com.microsoft",
             attrs={"K": d, "N": n, "bits": 4, "block_size": NBITS_BLOCK, "accuracy_level": 4}),
        [Value("A", ob.FLOAT, [1, d])],
        Value("Y", ob.FLOAT, [1, n]),
        {},
        {"B": packed, "S": scales.reshape(-1)},
    )


def nbits_session(packed: npt.NDArray[np.uint8], scales: npt.NDArray[np.float32],
                  threads: int) -> tuple[ort.InferenceSession, tuple[ort.OrtValue, ...]]:
    """A session of :func:`nbits_model`, and the OrtValues it was given B and S in.

    onnxruntime reads B and S from our arrays (no model-bytes copy, no parsed copy)
    and prepacks B. Its contract is that external initializers outlive the session:
    the caller keeps the returned values (they hold the arrays) as long as the session.
    Measured: a 100k load's packing peak ~20 MB lower than with the data in the model.
    """
    values = (ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(packed)),
              ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(scales.reshape(-1))))
    so = _options(threads)
    so.add_external_initializers(["B", "S"], list(values))
    session = ort.InferenceSession(nbits_model(packed, scales), so, providers=["CPUExecutionProvider"])
    return session, values


def _dynamic_session(threads: int) -> ort.InferenceSession:
    return _session(dynamic_model(), threads)


def quantise_4bit(rows: npt.NDArray[np.floating]) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.float32]]:
    """MatMulNBits B and scales of ``rows`` (n x d, d a multiple of NBITS_BLOCK).

    Symmetric per block: code = rint(x / s) + 8 with s = max|x| / 7; two codes a
    byte, the even component in the low nibble. Done ``_QUANT_CHUNK`` rows at a
    time, so the float temporaries stay small (peak RSS is a target).
    """
    n, d = rows.shape
    nb = d // NBITS_BLOCK
    packed = np.empty((n, nb, NBITS_BLOCK // 2), np.uint8)
    scales = np.empty((n, nb), np.float32)
    for start in range(0, n, _QUANT_CHUNK):
        end = min(n, start + _QUANT_CHUNK)
        blocks = np.asarray(rows[start:end], dtype=np.float32).reshape(end - start, nb, NBITS_BLOCK)
        sc = np.abs(blocks).max(axis=2) / np.float32(_QMAX4)
        sc[sc == 0] = 1.0
        codes = (np.rint(blocks / sc[..., None]) + 8).astype(np.uint8)
        packed[start:end] = codes[..., 0::2] | (codes[..., 1::2] << 4)
        scales[start:end] = sc
    return packed, scales


class _Segment:
    """One packed segment: its session, how many rows it packed, their largest block scales."""

    __slots__ = ("data", "max_scale", "rows", "session")

    def __init__(self, rows: int, session: ort.InferenceSession, data: tuple[ort.OrtValue, ...],
                 max_scale: npt.NDArray[np.float32]) -> None:
        self.rows = rows
        self.session = session
        self.data = data  # the session's external initializers: must outlive it
        self.max_scale = max_scale


@dataclass(frozen=True, slots=True)
class PackJob:
    """Rows ``[start, start + len(rows))`` of segment ``seg`` as they were at generation ``gen``."""

    seg: int
    gen: int
    start: int
    rows: npt.NDArray[np.floating]


@dataclass(frozen=True, slots=True)
class Packed:
    """A :class:`PackJob`'s session (built without the owner's lock) and its rows' scales."""

    job: PackJob
    session: ort.InferenceSession
    data: tuple[ort.OrtValue, ...]
    scales: npt.NDArray[np.float32]


class GalleryScan:
    """Approximate scores of all rows (see module doc). Not thread-safe: the matcher calls it
    under its lock (:meth:`build` excepted). ``qscale`` maps a unit-vector component to the
    int8 rows it is given."""

    def __init__(self, threads: int, qscale: float, *, pack: bool | None = None) -> None:
        self._threads = threads
        self._qscale = qscale
        self.packs = True if pack is None else pack
        self._dynamic: ort.InferenceSession | None = None
        # Segment i holds rows [i * SEGMENT, min(n, (i + 1) * SEGMENT)); its session packed the
        # first ``rows`` of them (None: none). Rows past that are scored exactly (``pending``).
        self._segments: list[_Segment | None] = []
        # Set to a fresh tick when a segment's rows are rewritten in place or cut (and when a
        # segment is created): a PackJob copied at another tick is stale. Ticks never repeat,
        # so a segment cleared and refilled never matches an old copy.
        self._gen: list[int] = []
        self._tick = 0
        # Rows whose packed codes no longer hold their content (a removal moved another row in).
        self._stale: set[int] = set()
        self._n = 0
        # Every packed row's block scales, in row order (each row's own bound, scan_bound.py):
        # float16 halves their memory (8 bytes a row) and the bound's slack covers the rounding.
        self._scales = np.zeros((0, 1), np.float16)

    @property
    def kernel(self) -> str:
        feats = cpu_features()
        isa = ("AVX-512 VNNI" if "avx512_vnni" in feats else "AVX-VNNI" if "avx_vnni" in feats
               else "AVX2, no VNNI")
        if self.packs:
            return (f"onnxruntime MatMulNBits 4-bit/{NBITS_BLOCK} prepacked {SEGMENT}-row segments, "
                    f"MLAS int8 kernel for {isa}")
        return f"onnxruntime MatMulInteger u8s8, dynamic ({isa})"

    @property
    def packed_segments(self) -> int:
        """Segments whose session covers every one of their rows."""
        return sum(1 for seg, part in enumerate(self._segments)
                   if part is not None and self._missing(seg, part) == 0)

    @property
    def packed_bytes(self) -> int:
        """Bytes of 4-bit codes and scales: the sessions' prepacked copies and the arrays they
        were given (which must outlive them), plus the bound's scales."""
        rows = sum(s.rows for s in self._segments if s is not None)
        return 2 * rows * self._scales.shape[1] * _BLOCK_BYTES + self._scales.nbytes

    def _rows_of(self, seg: int) -> int:
        return max(0, min(self._n, (seg + 1) * SEGMENT) - seg * SEGMENT)

    def _missing(self, seg: int, part: _Segment | None) -> int:
        return self._rows_of(seg) - (0 if part is None else min(part.rows, self._rows_of(seg)))

    @property
    def pending(self) -> int:
        """Rows scored exactly (not covered by a session, or stale in one) until re-packed."""
        return sum(self._missing(i, p) for i, p in enumerate(self._segments)) + len(self._stale)

    def resize(self, n: int) -> None:
        """The matrix now has ``n`` rows (after appends or removals)."""
        if not self.packs:
            return
        if n < self._n and n // SEGMENT < len(self._gen):
            # Rows at the end left: a snapshot of this segment may hold rows that an append
            # will rewrite, which no stale mark of the installed session would cover.
            self._gen[n // SEGMENT] = self._next()
        self._n = n
        parts = -(-n // SEGMENT)
        del self._segments[parts:]
        del self._gen[parts:]
        while len(self._segments) < parts:
            self._segments.append(None)
            self._gen.append(self._next())
        if self._stale and max(self._stale) >= n:
            self._stale = {r for r in self._stale if r < n}

    def _next(self) -> int:
        self._tick += 1
        return self._tick

    def appended(self, start: int, end: int) -> None:
        """Rows ``[start, end)`` were appended (after :meth:`resize`). Rows a session packed
        before a removal shrank the matrix hold other content now: stale. A snapshot taken
        before holds none of these rows, so no generation changes."""
        for seg in range(start // SEGMENT, min(len(self._segments), -(-end // SEGMENT))):
            part = self._segments[seg]
            if part is not None:
                lo, hi = max(start, seg * SEGMENT), min(end, seg * SEGMENT + part.rows)
                self._stale.update(range(lo, hi))

    def changed(self, row: int) -> None:
        """Row ``row`` (below n) was rewritten in place: scored exactly until re-packed."""
        seg = row // SEGMENT
        if seg < len(self._segments):
            self._gen[seg] = self._next()
            part = self._segments[seg]
            if part is not None and row < seg * SEGMENT + part.rows:
                self._stale.add(row)

    def invalidate_from(self, row: int) -> None:
        """Rows from ``row`` on moved (a compaction): their segments are re-packed whole."""
        first = row // SEGMENT
        for seg in range(first, len(self._segments)):
            self._segments[seg] = None
            self._gen[seg] = self._next()
        self._stale = {r for r in self._stale if r < first * SEGMENT}

    def snapshot(self, rows: npt.NDArray[np.floating], *, copy: bool = True) -> PackJob | None:
        """The segment with the most pending rows, copied (``copy=False``: a view, for an owner
        that holds its lock until :meth:`install`); None when nothing is pending."""
        best, most = -1, 0
        stale_at = np.bincount(np.fromiter(self._stale, np.int64, len(self._stale)) // SEGMENT,
                               minlength=len(self._segments)) if self._stale else None
        for seg, part in enumerate(self._segments):
            todo = self._missing(seg, part) + (int(stale_at[seg]) if stale_at is not None else 0)
            if todo > most:
                best, most = seg, todo
        if best < 0:
            return None
        start = best * SEGMENT
        view = rows[start : start + self._rows_of(best)]
        return PackJob(best, self._gen[best], start, view.copy() if copy else view)

    def build(self, job: PackJob) -> Packed:
        """Quantise and pack ``job``'s rows into a session. Needs no lock: the slow part."""
        packed, scales = quantise_4bit(job.rows)
        session, data = nbits_session(packed, scales, self._threads)
        return Packed(job, session, data, scales)

    def install(self, built: Packed) -> bool:
        """Use ``built`` for its segment unless a row it packed was rewritten since (False)."""
        job = built.job
        seg, end = job.seg, job.start + job.rows.shape[0]
        if seg >= len(self._segments) or self._gen[seg] != job.gen or end > self._n:
            return False
        if self._scales.shape[0] < end or self._scales.shape[1] != built.scales.shape[1]:
            grown = np.zeros((-(-end // SEGMENT) * SEGMENT, built.scales.shape[1]), np.float16)
            if self._scales.shape[1] == built.scales.shape[1]:
                grown[: self._scales.shape[0]] = self._scales
            self._scales = grown
        self._scales[job.start : end] = built.scales
        self._segments[seg] = _Segment(end - job.start, built.session, built.data,
                                       self._scales[job.start : end].max(axis=0).astype(np.float32))
        if self._stale:
            self._stale = {r for r in self._stale if not job.start <= r < end}
        return True

    def pack_pending(self, rows: npt.NDArray[np.floating]) -> None:
        """Pack every pending row now, in place (the caller holds its lock throughout)."""
        while (job := self.snapshot(rows, copy=False)) is not None:
            self.install(self.build(job))

    def clear(self) -> None:
        self._segments.clear()
        self._gen.clear()
        self._stale.clear()
        self._n = 0
        self._scales = np.zeros((0, 1), np.float16)

    def scores(self, rows: npt.NDArray[np.floating], q8: npt.NDArray[np.uint8] | None, n: int,
               padded: int, q: npt.NDArray[np.float32]) -> tuple[npt.NDArray[np.float32], ScanBound]:
        """Approximate cosines of rows ``[0, padded)`` for the unit query ``q``, and their bound.

        ``rows`` are the first ``n`` unit rows (pending ones scored exactly); ``q8`` their
        offset-binary int8 copy (the dynamic kernel's input; rows past ``n`` score 0).
        Scores past ``n`` are meaningless.
        """
        y = np.empty(padded, np.float32)
        if not self.packs:
            assert q8 is not None
            if self._dynamic is None:
                self._dynamic = _dynamic_session(self._threads)
            qi = np.clip(np.rint(q * self._qscale), -127, 127).astype(np.int8)
            raw = self._dynamic.run(None, {"A": q8[:padded], "B": qi.reshape(-1, 1)})[0].reshape(-1)
            np.multiply(raw, np.float32(1.0 / (self._qscale * self._qscale)), out=y, casting="unsafe")
            return y, int8_bound(self._qscale)
        qa = np.ascontiguousarray(q.reshape(1, -1), dtype=np.float32)
        blocks = q.size // NBITS_BLOCK
        tops = [np.zeros(blocks, np.float32)]
        for seg, part in enumerate(self._segments):
            start, end = seg * SEGMENT, min(n, (seg + 1) * SEGMENT)
            done = 0
            if part is not None:
                done = min(part.rows, end - start)
                y[start : start + done] = part.session.run(None, {"A": qa})[0].reshape(-1)[:done]
                tops.append(part.max_scale)
            # Rows no session covers yet (enrolled since, or a segment a compaction moved):
            # exact, so a change never waits for a pack (an onnxruntime session: ~20-90 ms).
            _exact(rows, start + done, end, q, y)
        if self._stale:
            at = np.fromiter(self._stale, np.intp, len(self._stale))
            y[at] = rows[at].astype(np.float32) @ q
        if self._scales.shape[0] < padded or self._scales.shape[1] != blocks:
            grown = np.zeros((padded, blocks), np.float16)  # unpacked rows: exact, any bound holds
            if self._scales.shape[1] == blocks:
                grown[: self._scales.shape[0]] = self._scales[:padded]
            self._scales = grown
        return y, nbits_bound(q, self._scales, np.max(tops, axis=0))


def _exact(rows: npt.NDArray[np.floating], start: int, end: int, q: npt.NDArray[np.float32],
           out: npt.NDArray[np.float32]) -> None:
    """``out[start:end]`` = exact cosines of those rows (widened chunk by chunk)."""
    for s in range(start, end, _EXACT_CHUNK):
        e = min(end, s + _EXACT_CHUNK)
        np.matmul(rows[s:e].astype(np.float32), q, out=out[s:e])
