"""onnxruntime sessions tuned for a small shared CPU."""

from __future__ import annotations

from pathlib import Path

import onnxruntime as ort

from .errors import ModelFormatError


def make_session(path: Path, *, intra_threads: int, spin: bool = False) -> ort.InferenceSession:
    """Open ``path`` on the CPU provider with small-device options.

    ``allow_spinning=0`` (``spin=False``, the default) stops idle worker
    threads from busy-waiting: with several sessions on 2 cores, spinning
    threads steal the CPU the other session needs (measured 49 ms -> 28 ms
    for detect+embed here). ``spin=True`` lets the workers spin *within* one
    ``run`` and stops them when it returns (``session.force_spinning_stop``),
    so the next session and an idle device do not pay for it: it saves the
    wake-up of the worker at each of the ~100 parallel operators of one SFace
    run (int8 embed ~4.5 -> ~3.4 ms here when the cores are free) but loses
    when other processes want the cores during the run.
    """
    so = ort.SessionOptions()
    so.intra_op_num_threads = max(1, intra_threads)
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    if spin:
        so.add_session_config_entry("session.force_spinning_stop", "1")
    so.add_session_config_entry("session.inter_op.allow_spinning", "0")
    so.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises several unrelated exception types
        raise ModelFormatError(f"onnxruntime cannot load {path.name}: {exc}") from None
