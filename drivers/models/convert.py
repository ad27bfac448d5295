"""Turning the shipped block-quantised ONNX files into graphs onnxruntime runs.

The pinned YuNet/SFace files store weights as int8 ``DequantizeLinear`` nodes
with a ``block_size`` attribute, which onnxruntime's CPU provider rejects. At
first load we fold every constant ``DequantizeLinear`` into an fp32
initializer, drop initializers from the graph inputs (so onnxruntime may
constant-fold them) and make the spatial input dims symbolic (so the detector
runs at any multiple of 32). The result is cached as
``<cache_dir>/<stem>-<source sha256[:16]>-fp32.onnx``; a cache file whose
recorded source hash does not match is rebuilt, never trusted.

For recognisers, :func:`optimized_cached` then applies the exact rewrites of
``optimize.py`` (PRelu -> Max, BN folded into Conv) to that fold and caches
``<stem>-<hash16>-v<converter>-fp32-opt<optimizer>.onnx``, after checking
numerically that it computes the same function. The plain fold stays in the
cache as the reference (OpenCV's path in ``facegate bench`` runs it).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnx
from onnx import numpy_helper

from .cached import CONVERTER_VERSION, OPTIMIZER_VERSION, converted_path, optimized_path, sha256_file
from .errors import ModelFormatError
from .optimize import optimize_model

__all__ = [
    "CONVERTER_VERSION", "OPTIMIZER_VERSION", "convert_cached", "converted_path", "fold_dequantize",
    "make_spatial_dynamic", "optimized_cached", "optimized_path", "sha256_file",
]


def _dequantize(
    q: npt.NDArray[np.generic],
    scale: npt.NDArray[np.float32],
    zero: npt.NDArray[np.generic] | None,
    axis: int,
    block: int,
) -> npt.NDArray[np.float32]:
    """Reference DequantizeLinear (per-tensor, per-axis or blocked) in numpy."""
    x = q.astype(np.float32)
    zp = np.zeros_like(scale) if zero is None else zero.astype(np.float32)
    if scale.size == 1:
        return ((x - zp.reshape(())) * scale.reshape(())).astype(np.float32)
    axis = axis % max(x.ndim, 1)
    if block > 0:
        s = np.repeat(scale, block, axis=axis)
        z = np.repeat(zp, block, axis=axis)
        idx = [slice(None)] * x.ndim
        idx[axis] = slice(0, x.shape[axis])
        s, z = s[tuple(idx)], z[tuple(idx)]
    else:
        shape = [1] * x.ndim
        shape[axis] = x.shape[axis]
        s, z = scale.reshape(shape), zp.reshape(shape)
    return ((x - z) * s).astype(np.float32)


def fold_dequantize(model: onnx.ModelProto) -> onnx.ModelProto:
    """Return ``model`` with constant DequantizeLinear nodes folded to fp32 initializers."""
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    keep: list[onnx.NodeProto] = []
    folded: list[onnx.TensorProto] = []
    for node in graph.node:
        if node.op_type != "DequantizeLinear" or not all(
            n in inits for n in node.input if n
        ):
            keep.append(node)
            continue
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        q = numpy_helper.to_array(inits[node.input[0]])
        scale = numpy_helper.to_array(inits[node.input[1]]).astype(np.float32)
        zero = (
            numpy_helper.to_array(inits[node.input[2]])
            if len(node.input) > 2 and node.input[2]
            else None
        )
        try:
            value = _dequantize(q, scale, zero, int(attrs.get("axis", 1)),
                                int(attrs.get("block_size", 0)))
        except ValueError as exc:
            raise ModelFormatError(f"cannot fold {node.name}: {exc}") from None
        folded.append(numpy_helper.from_array(value, node.output[0]))
    del graph.node[:]
    graph.node.extend(keep)
    graph.initializer.extend(folded)
    used = {n for node in graph.node for n in node.input} | {o.name for o in graph.output}
    live = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(live)
    # Initializers listed as graph inputs are overridable, which blocks constant folding.
    init_names = {i.name for i in graph.initializer}
    consumed = {n for node in graph.node for n in node.input}
    real_inputs = [i for i in graph.input if i.name in consumed and i.name not in init_names]
    del graph.input[:]
    graph.input.extend(real_inputs)
    # Stale shape annotations would pin the old fixed input size.
    del graph.value_info[:]
    return model


def make_spatial_dynamic(model: onnx.ModelProto) -> onnx.ModelProto:
    """Make H and W of the first NCHW input symbolic, and output dim 1 symbolic."""
    dims = model.graph.input[0].type.tensor_type.shape.dim
    if len(dims) == 4:
        dims[2].ClearField("dim_value")
        dims[2].dim_param = "height"
        dims[3].ClearField("dim_value")
        dims[3].dim_param = "width"
    for out in model.graph.output:
        odims = out.type.tensor_type.shape.dim
        if len(odims) >= 2:
            odims[1].ClearField("dim_value")
            odims[1].dim_param = f"{out.name}_n"
    return model


def _atomic_save(model: onnx.ModelProto, target: Path) -> None:
    """Write ``model`` to ``target`` via temp file + rename (never half-written)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".convert-", suffix=".onnx")
    os.close(fd)
    try:
        onnx.save(model, tmp)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def convert_cached(
    source: Path, source_hash: str, cache_dir: Path, *, dynamic_spatial: bool
) -> Path:
    """Return a path to an onnxruntime-ready copy of ``source``, converting on a miss.

    The cache key is the verified source hash (checked by the caller), so a
    changed source never reuses an old conversion. Written atomically
    (temp file + rename) so a crash never leaves a half-written model.
    """
    target = converted_path(source, source_hash, cache_dir)
    if target.is_file():
        return target
    try:
        model = onnx.load(str(source))
    except Exception as exc:  # noqa: BLE001 - onnx raises bare DecodeError/ValueError variants
        raise ModelFormatError(f"{source} is not a readable ONNX model: {exc}") from None
    model = fold_dequantize(model)
    if dynamic_spatial:
        model = make_spatial_dynamic(model)
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        raise ModelFormatError(f"converted {source.name} is not valid ONNX: {exc}") from None
    _atomic_save(model, target)
    return target


def _probe_inputs(model: onnx.ModelProto) -> list[npt.NDArray[np.float32]]:
    """Two deterministic image-like inputs (0-255) for the model's first input."""
    dims = model.graph.input[0].type.tensor_type.shape.dim
    shape = [d.dim_value if d.dim_value > 0 else (1 if i == 0 else 112)
             for i, d in enumerate(dims)]
    rng = np.random.default_rng(20211201)
    smooth = np.linspace(0.0, 255.0, int(np.prod(shape)), dtype=np.float32).reshape(shape)
    return [rng.uniform(0.0, 255.0, shape).astype(np.float32), smooth]


def _same_function(a: onnx.ModelProto, b: onnx.ModelProto) -> bool:
    """True when ``a`` and ``b`` give the same first output (to fp32 rounding) on probe inputs."""
    import onnxruntime as ort  # noqa: PLC0415 - only needed while building a cache file

    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.intra_op_num_threads = 1
    try:
        sa = ort.InferenceSession(a.SerializeToString(), so, providers=["CPUExecutionProvider"])
        sb = ort.InferenceSession(b.SerializeToString(), so, providers=["CPUExecutionProvider"])
        name = sa.get_inputs()[0].name
        for x in _probe_inputs(a):
            ya = np.asarray(sa.run(None, {name: x})[0], np.float64).ravel()
            yb = np.asarray(sb.run(None, {name: x})[0], np.float64).ravel()
            scale = max(1e-6, float(np.abs(ya).max()))
            if ya.shape != yb.shape or float(np.abs(ya - yb).max()) > 1e-4 * scale:
                return False
    except Exception:  # noqa: BLE001 - any failure to run both means "not proven equal"
        return False
    return True


def optimized_cached(plain: Path) -> Path:
    """The exact-rewrite copy of the plain fold ``plain`` (see ``optimize.py``), cached.

    Falls back to ``plain`` (and caches nothing) when the rewritten graph does
    not reproduce the plain fold's output on the probe inputs: a rewrite must
    never change what a model computes.
    """
    target = optimized_path(plain)
    if target.is_file():
        return target
    try:
        reference = onnx.load(str(plain))
    except Exception as exc:  # noqa: BLE001 - onnx raises bare DecodeError/ValueError variants
        raise ModelFormatError(f"{plain} is not a readable ONNX model: {exc}") from None
    model = optimize_model(onnx.load(str(plain)))
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError:
        return plain
    if not _same_function(reference, model):
        return plain
    _atomic_save(model, target)
    return target
