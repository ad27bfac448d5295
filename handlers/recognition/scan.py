"""The int8 1:N scan: approximate scores of every gallery row for one query.

Kernels (chosen at run time, reported by :attr:`Int8Scan.kernel`):

* ``prepacked``: the gallery is cut into segments of ``SEGMENT`` rows; each
  segment is the constant B of its own onnxruntime ``MatMulInteger`` session
  (query 1 x d, uint8, times segment d x SEGMENT, int8). onnxruntime packs a
  constant B once, at session creation, into its kernel's layout, so a search
  streams the packed gallery instead of re-packing it per query. Without VNNI
  (AVX2 only) that is ~3x faster than the dynamic kernel on the same CPU.
* ``dynamic``: one ``MatMulInteger`` over the row-major uint8 matrix
  (N x d times d x 1). Used for the tail of rows not yet in a full segment and
  for segments changed since they were packed (until they are re-packed).

The matcher picks ``prepacked`` when the CPU has no VNNI (``cpu.has_vnni``):
there the dynamic kernel is compute-bound (13-18 ms at 1M rows on a Zen 3
core). Cost: each packed segment holds onnxruntime's packed copy and session
state, ~20 MB RSS per 32,768 rows measured (5x the 4 MB of int8 data), so a
100k gallery pays ~60-70 MB for a ~3x faster scan, and above
``PREPACK_MAX_ROWS`` nothing is packed (a 1M gallery would need ~640 MB).
With VNNI the dynamic kernel is used and nothing extra is held.

Segments are re-packed by the owner (the matcher) under its lock right after
a mutation (:meth:`Int8Scan.refresh`): appends pack new full segments, a
removal re-packs the one or two segments it touched.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from ...runtime.machine import has_vnni

SEGMENT = 32_768
#: Above this many rows nothing is packed: packing costs ~5x the int8 data in RSS
#: (measured), which a 1M gallery cannot afford within 1 GB.
PREPACK_MAX_ROWS = 262_144


def _options(threads: int) -> ort.SessionOptions:
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    # One tiny node per session: an arena or memory pattern would only hold memory.
    so.enable_cpu_mem_arena = False
    so.enable_mem_pattern = False
    so.log_severity_level = 3
    return so


def _model(inputs: list[ort.NodeArg], out_shape: list[int | str],
           initializers: list[TensorProto]) -> bytes:
    node = helper.make_node("MatMulInteger", ["A", "B", "azp"], ["Y"])
    graph = helper.make_graph(
        [node], "gallery_scan", inputs,
        [helper.make_tensor_value_info("Y", TensorProto.INT32, out_shape)],
        initializer=[helper.make_tensor("azp", TensorProto.UINT8, [], [128]), *initializers],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    model.ir_version = 10
    return bytes(model.SerializeToString())


def _dynamic_session(threads: int) -> ort.InferenceSession:
    inputs = [
        helper.make_tensor_value_info("A", TensorProto.UINT8, ["N", "D"]),
        helper.make_tensor_value_info("B", TensorProto.INT8, ["D", 1]),
    ]
    return ort.InferenceSession(_model(inputs, ["N", 1], []), _options(threads),
                                providers=["CPUExecutionProvider"])


def _packed_session(rows_u8: npt.NDArray[np.uint8], threads: int) -> ort.InferenceSession:
    """A session whose constant B is ``rows_u8`` (offset-binary) as int8, transposed."""
    b = np.ascontiguousarray((rows_u8 ^ np.uint8(0x80)).view(np.int8).T)
    dim = b.shape[0]
    inputs = [helper.make_tensor_value_info("A", TensorProto.UINT8, [1, dim])]
    return ort.InferenceSession(
        _model(inputs, [1, b.shape[1]], [numpy_helper.from_array(b, "B")]),
        _options(threads), providers=["CPUExecutionProvider"],
    )


class Int8Scan:
    """Scores of all rows of an offset-binary uint8 matrix (see module doc). Not thread-safe:
    the matcher calls it under its lock."""

    def __init__(self, threads: int, *, prepack: bool = True) -> None:
        self._threads = threads
        self._prepack = prepack
        self._dynamic: ort.InferenceSession | None = None
        self._segments: list[ort.InferenceSession | None] = []  # None: changed since packed

    @property
    def kernel(self) -> str:
        isa = "VNNI" if has_vnni() else "AVX2, no VNNI"
        if self._prepack and self._segments:
            return f"onnxruntime MatMulInteger u8s8, prepacked {SEGMENT}-row segments ({isa})"
        return f"onnxruntime MatMulInteger u8s8, dynamic ({isa})"

    @property
    def packed_segments(self) -> int:
        return sum(s is not None for s in self._segments)

    def invalidate(self, row: int) -> None:
        """Row ``row`` changed: its segment is scanned dynamically until re-packed."""
        seg = row // SEGMENT
        if seg < len(self._segments):
            self._segments[seg] = None

    def invalidate_from(self, row: int) -> None:
        for seg in range(row // SEGMENT, len(self._segments)):
            self._segments[seg] = None

    def truncate(self, n: int) -> None:
        """The matrix now has ``n`` rows: drop segments past it."""
        del self._segments[n // SEGMENT :]

    def refresh(self, q8: npt.NDArray[np.uint8], n: int) -> None:
        """Pack every full segment of the first ``n`` rows that is missing or changed."""
        if not self._prepack or n > PREPACK_MAX_ROWS:
            self._segments.clear()
            return
        self.truncate(n)
        full = n // SEGMENT
        while len(self._segments) < full:
            self._segments.append(None)
        for seg in range(full):
            if self._segments[seg] is None:
                self._segments[seg] = _packed_session(
                    q8[seg * SEGMENT : (seg + 1) * SEGMENT], self._threads)

    def clear(self) -> None:
        self._segments.clear()

    def scores(self, q8: npt.NDArray[np.uint8], padded: int,
               qi: npt.NDArray[np.int8]) -> npt.NDArray[np.int32]:
        """int32 scores of rows ``[0, padded)`` for the int8 query ``qi``."""
        if self._dynamic is None:
            self._dynamic = _dynamic_session(self._threads)
        y = np.empty(padded, np.int32)
        qa = (qi.view(np.uint8) ^ np.uint8(0x80)).reshape(1, -1)
        qb = qi.reshape(-1, 1)
        start = 0
        segs = self._segments
        while start < padded:
            seg = start // SEGMENT
            sess = segs[seg] if seg < len(segs) else None
            if sess is not None:
                y[start : start + SEGMENT] = sess.run(None, {"A": qa})[0].reshape(-1)
                start += SEGMENT
                continue
            # Dynamic run over consecutive unpacked segments (and the tail) at once.
            end = start
            while end < padded and not ((end // SEGMENT) < len(segs) and segs[end // SEGMENT] is not None):
                end = min(padded, (end // SEGMENT + 1) * SEGMENT)
            y[start:end] = self._dynamic.run(None, {"A": q8[start:end], "B": qb})[0].reshape(-1)
            start = end
        return y
