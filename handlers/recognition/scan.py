"""The approximate 1:N scan: a score for every gallery row, plus a bound on its error.

Kernels (chosen at run time by CPU features, reported by :attr:`GalleryScan.kernel`):

* ``nbits`` (AVX2 without VNNI): the gallery is cut into segments of ``SEGMENT``
  rows; each segment is the constant B of its own onnxruntime ``MatMulNBits``
  session (com.microsoft): 4-bit codes, one float scale per ``NBITS_BLOCK``
  components of a row (symmetric, zero point 8), ``accuracy_level=4`` (the
  query is quantised to int8 per block and the AVX2 int8 kernel runs).
  onnxruntime packs the constant B once at session creation, so a query
  streams 64 bytes + 16 bytes of scales per 128-d row instead of 128 bytes of
  int8: the scan is bound by memory bandwidth, and it reads half of what the
  int8 scan reads (a 1M gallery: ~80 MB instead of 128 MB).
* ``dynamic``: one int8 ``MatMulInteger`` over the row-major offset-binary
  uint8 matrix (N x d times d x 1). On VNNI CPUs it scans everything (the
  native int8 dot product makes it fast there); elsewhere it scores the tail of
  rows not yet in a full segment and segments changed since they were packed.

Scores are approximate cosines. :meth:`GalleryScan.scores` also returns
``bound``: a per-query bound on |approximate - exact| that holds for every
row except with a probability of the order of 1e-9 (``SIGMAS`` standard
deviations of the rounding error, which is a sum of independent uniform
terms). The matcher re-ranks exactly every row whose approximate score is
within ``2 * bound`` of the k-th subject's, so the approximation can only lose
a row whose error exceeds the bound.

Segments are packed by the owner (the matcher) under its lock right after a
mutation (:meth:`GalleryScan.refresh`): appends pack new full segments, a
removal re-packs the segments it touched.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from ...runtime.machine import has_vnni
from . import onnx_bytes as ob
from .onnx_bytes import Node, Value

SEGMENT = 32_768
#: Components of a row sharing one 4-bit scale.
NBITS_BLOCK = 32
#: Standard deviations of the rounding error covered by the bound.
SIGMAS = 6.0
#: Quantile of the rows' 4-bit scales the bound is computed for.
SCALE_QUANTILE = 0.999
_QMAX4 = 7
_QUANT_CHUNK = 4096


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
           initializers: dict[str, npt.NDArray[np.generic]]) -> bytes:
    # Written by onnx_bytes, not the onnx package: importing onnx costs ~27 MB of RSS (issue 16).
    return ob.model([node], inputs, [out], initializers, name="gallery_scan",
                    opsets={"": 21, "com.microsoft": 1}, ir_version=10)


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
    """The ``MatMulNBits`` graph of one segment (``packed``, ``scales`` from :func:`quantise_4bit`)."""
    n, nb, half = packed.shape
    d = nb * half * 2
    return _model(
        Node("MatMulNBits", ["A", "B", "S"], ["Y"], domain="com.microsoft",
             attrs={"K": d, "N": n, "bits": 4, "block_size": NBITS_BLOCK, "accuracy_level": 4}),
        [Value("A", ob.FLOAT, [1, d])],
        Value("Y", ob.FLOAT, [1, n]),
        {"B": packed, "S": scales.reshape(-1)},
    )


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
    """One packed segment: its session and a high quantile of the squared scale per block."""

    __slots__ = ("rows", "session", "sq_scale")

    def __init__(self, rows: npt.NDArray[np.floating], threads: int) -> None:
        self.rows = rows.shape[0]
        packed, scales = quantise_4bit(rows)
        self.session = _session(nbits_model(packed, scales), threads)
        # The bound's row scale: the 99.9th percentile, not the maximum (a rare row with an
        # outlying component has a 2-3x coarser step; its error still stays within
        # SIGMAS * 0.75 of its own deviation at most; see _bound).
        self.sq_scale = np.square(np.quantile(scales, SCALE_QUANTILE, axis=0), dtype=np.float64)


class GalleryScan:
    """Approximate scores of all rows (see module doc). Not thread-safe: the matcher calls it
    under its lock. ``qscale`` maps a unit-vector component to the int8 rows it is given."""

    def __init__(self, threads: int, qscale: float, *, pack: bool | None = None) -> None:
        self._threads = threads
        self._qscale = qscale
        self.packs = (not has_vnni()) if pack is None else pack
        self._dynamic: ort.InferenceSession | None = None
        # Segment i holds rows [i * SEGMENT, min(n, (i + 1) * SEGMENT)); None: changed since packed.
        self._segments: list[_Segment | None] = []

    @property
    def kernel(self) -> str:
        isa = "VNNI" if has_vnni() else "AVX2, no VNNI"
        if self.packs:
            return f"onnxruntime MatMulNBits 4-bit/{NBITS_BLOCK} prepacked {SEGMENT}-row segments ({isa})"
        return f"onnxruntime MatMulInteger u8s8, dynamic ({isa})"

    @property
    def packed_segments(self) -> int:
        return sum(s is not None for s in self._segments)

    def invalidate(self, row: int) -> None:
        """Row ``row`` changed: its segment is re-packed before the next scan."""
        seg = row // SEGMENT
        if seg < len(self._segments):
            self._segments[seg] = None

    def invalidate_from(self, row: int) -> None:
        for seg in range(row // SEGMENT, len(self._segments)):
            self._segments[seg] = None

    def refresh(self, rows: npt.NDArray[np.floating], n: int, *, pack: bool = True) -> None:
        """The matrix now has ``n`` rows: pack every full segment missing or changed.

        The partial last segment (and, with ``pack=False``, every segment) is packed by
        :meth:`pack_pending` or the next scan: a bulk load appends batch after batch, and
        packing once is enough.
        """
        if not self.packs:
            return
        full, parts = n // SEGMENT, -(-n // SEGMENT)
        del self._segments[parts:]
        for seg, packed in enumerate(self._segments):
            if packed is not None and packed.rows != min(n, (seg + 1) * SEGMENT) - seg * SEGMENT:
                self._segments[seg] = None  # a partial segment that grew or shrank
        while len(self._segments) < parts:
            self._segments.append(None)
        for seg in range(full if pack else 0):
            if self._segments[seg] is None:
                self._segments[seg] = _Segment(rows[seg * SEGMENT : (seg + 1) * SEGMENT], self._threads)

    def pack_pending(self, rows: npt.NDArray[np.floating], n: int) -> None:
        """Pack every segment not packed yet now instead of at the next scan."""
        for seg, packed in enumerate(self._segments):
            if packed is None:
                start, end = seg * SEGMENT, min(n, (seg + 1) * SEGMENT)
                self._segments[seg] = _Segment(rows[start:end], self._threads)

    def clear(self) -> None:
        self._segments.clear()

    def _bound(self, q: npt.NDArray[np.float32]) -> float:
        if not self.packs:
            # int8 rows and query: each side rounds to 1/qscale, uniform error, unit vectors.
            half = 0.5 / self._qscale
            return SIGMAS * math.sqrt(2.0 * half * half / 3.0)
        sq = np.max([s.sq_scale for s in self._segments if s is not None], axis=0)
        qb = q.reshape(-1, NBITS_BLOCK).astype(np.float64)
        # Row codes: uniform error of s/2 per component; the query is quantised to int8
        # per block by the kernel (step max|q_b| / 127); rows have norm <= ~1.
        var4 = float(np.sum(np.sum(qb * qb, axis=1) * sq) / 12.0)
        step_q = np.abs(qb).max(axis=1) / 127.0
        return SIGMAS * math.sqrt(var4 + float(np.sum(step_q * step_q)) / 12.0 * 1.1)

    def scores(self, rows: npt.NDArray[np.floating], q8: npt.NDArray[np.uint8] | None, n: int,
               padded: int, q: npt.NDArray[np.float32]) -> tuple[npt.NDArray[np.float32], float]:
        """Approximate cosines of rows ``[0, padded)`` for the unit query ``q``, and their bound.

        ``rows`` are the first ``n`` unit rows (packed on demand); ``q8`` their
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
            return y, self._bound(q)
        qa = np.ascontiguousarray(q.reshape(1, -1), dtype=np.float32)
        for seg, packed in enumerate(self._segments):
            start, end = seg * SEGMENT, min(n, (seg + 1) * SEGMENT)
            part = packed if packed is not None else _Segment(rows[start:end], self._threads)
            self._segments[seg] = part
            y[start:end] = part.session.run(None, {"A": qa})[0].reshape(-1)
        return y, self._bound(q)
