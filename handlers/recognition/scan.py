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
  ~2x), so it runs everywhere. Segments not packed yet (a partial last
  segment, one changed by a removal) are packed when the next scan needs them.
* ``dynamic`` (``pack=False``; tests force it): one int8 ``MatMulInteger``
  over the row-major offset-binary uint8 matrix (N x d times d x 1).

``SEGMENT`` trades ``session.run`` calls per query (1M rows: 16) against the
re-pack a removal costs (one segment, ~0.1-0.2 s; docs/performance.md).

Scores are approximate cosines. :meth:`GalleryScan.scores` also returns their
:class:`~.scan_bound.ScanBound`: each row's own bound on |approximate - exact|,
holding except with a probability of the order of 1e-9 (scan_bound.py), and a
loose bound over all rows. The shortlist re-ranks exactly every row that could
be in the exact top-k, so the approximation can only lose a row whose error
exceeds its bound.

Segments are packed by the owner (the matcher) under its lock right after a
mutation (:meth:`GalleryScan.refresh`): appends pack new full segments, a
removal re-packs the segments it touched.
"""

from __future__ import annotations

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
    """One packed segment: its session and its rows' largest block scales (for ``loose``)."""

    __slots__ = ("data", "max_scale", "rows", "session")

    def __init__(self, rows: int, session: ort.InferenceSession, data: tuple[ort.OrtValue, ...],
                 max_scale: npt.NDArray[np.float32]) -> None:
        self.rows = rows
        self.session = session
        self.data = data  # the session's external initializers: must outlive it
        self.max_scale = max_scale


class GalleryScan:
    """Approximate scores of all rows (see module doc). Not thread-safe: the matcher calls it
    under its lock. ``qscale`` maps a unit-vector component to the int8 rows it is given."""

    def __init__(self, threads: int, qscale: float, *, pack: bool | None = None) -> None:
        self._threads = threads
        self._qscale = qscale
        self.packs = True if pack is None else pack
        self._dynamic: ort.InferenceSession | None = None
        # Segment i holds rows [i * SEGMENT, min(n, (i + 1) * SEGMENT)); None: changed since packed.
        self._segments: list[_Segment | None] = []
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
        return sum(s is not None for s in self._segments)

    @property
    def packed_bytes(self) -> int:
        """Bytes of 4-bit codes and scales: the sessions' prepacked copies and the arrays they
        were given (which must outlive them), plus the bound's scales."""
        rows = sum(s.rows for s in self._segments if s is not None)
        return 2 * rows * self._scales.shape[1] * _BLOCK_BYTES + self._scales.nbytes

    def invalidate(self, row: int) -> None:
        """Row ``row`` changed: its segment is re-packed before the next scan."""
        seg = row // SEGMENT
        if seg < len(self._segments):
            self._segments[seg] = None

    def invalidate_from(self, row: int) -> None:
        for seg in range(row // SEGMENT, len(self._segments)):
            self._segments[seg] = None

    def _pack(self, seg: int, rows: npt.NDArray[np.floating], n: int) -> _Segment:
        start, end = seg * SEGMENT, min(n, (seg + 1) * SEGMENT)
        packed, scales = quantise_4bit(rows[start:end])
        session, data = nbits_session(packed, scales, self._threads)
        if self._scales.shape[0] < end or self._scales.shape[1] != scales.shape[1]:
            grown = np.zeros((-(-end // SEGMENT) * SEGMENT, scales.shape[1]), np.float16)
            if self._scales.shape[1] == scales.shape[1]:
                grown[: self._scales.shape[0]] = self._scales
            self._scales = grown
        self._scales[start:end] = scales
        part = _Segment(end - start, session, data,
                        self._scales[start:end].max(axis=0).astype(np.float32))
        self._segments[seg] = part
        return part

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
                self._pack(seg, rows, n)

    def pack_pending(self, rows: npt.NDArray[np.floating], n: int) -> None:
        """Pack every segment not packed yet now instead of at the next scan."""
        for seg, packed in enumerate(self._segments):
            if packed is None:
                self._pack(seg, rows, n)

    def clear(self) -> None:
        self._segments.clear()
        self._scales = np.zeros((0, 1), np.float16)

    def scores(self, rows: npt.NDArray[np.floating], q8: npt.NDArray[np.uint8] | None, n: int,
               padded: int, q: npt.NDArray[np.float32]) -> tuple[npt.NDArray[np.float32], ScanBound]:
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
            return y, int8_bound(self._qscale)
        qa = np.ascontiguousarray(q.reshape(1, -1), dtype=np.float32)
        tops = []
        for seg, packed in enumerate(self._segments):
            part = packed if packed is not None else self._pack(seg, rows, n)
            start = seg * SEGMENT
            y[start : start + part.rows] = part.session.run(None, {"A": qa})[0].reshape(-1)
            tops.append(part.max_scale)
        return y, nbits_bound(q, self._scales, np.max(tops, axis=0))
