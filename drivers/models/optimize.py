"""Exact graph rewrites that make the folded recogniser fast on onnxruntime's CPU provider.

Why: profiling the fp32 fold of SFace showed 11 of its 18 ms in ``PRelu``.
onnxruntime runs a per-channel ``PRelu`` (slope ``[C,1,1]``) through its
generic broadcasting path, several times slower than a convolution over the
same tensor, and it cannot fuse it into the preceding ``Conv``. The rewrite
below replaces it by two vectorised elementwise ops and is exact (not an
approximation), so embeddings, the model id and enrolled templates are
unchanged.

Rewrites, each applied only where its preconditions are checked:

1. ``Reshape`` of two initializers -> one initializer (SFace reshapes every
   weight at run time; a constant weight also lets the quantiser see it).
2. ``Conv -> BatchNormalization`` (inference form, constant params, the Conv
   output used only by the BN) -> one ``Conv`` with scaled weights and bias.
3. ``PRelu(y, s)`` with a per-channel constant slope -> ``Max(y, s*y)``.
   For ``s <= 1`` this is PRelu exactly (``y > 0``: ``y >= s*y``; ``y < 0``:
   ``s*y >= y``), negative slopes included. A channel with ``s > 1`` is
   handled by negating it: the producing Conv's weights and bias are
   multiplied by -1 for that channel (so it yields ``-y``), ``Max`` then gives
   ``-PRelu(y)``, and every consuming Conv's weights for that input channel are
   multiplied by -1 again. If the producer or a consumer is not such a Conv,
   the PRelu is left alone.

:func:`optimize_model` never changes what the graph computes; the caller
(``convert.optimized_cached``) still checks the result numerically against
the plain fold before trusting it.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import onnx
from onnx import helper, numpy_helper

from .cached import OPTIMIZER_VERSION

__all__ = ["OPTIMIZER_VERSION", "optimize_model"]  # OPTIMIZER_VERSION lives in cached.py (no onnx import)

_F32 = npt.NDArray[np.float32]


class _Graph:
    """Mutable view of a graph: nodes in order, initializers by name."""

    def __init__(self, model: onnx.ModelProto) -> None:
        self.model = model
        self.nodes: list[onnx.NodeProto] = list(model.graph.node)
        self.inits: dict[str, onnx.TensorProto] = {i.name: i for i in model.graph.initializer}
        self.outputs = {o.name for o in model.graph.output}

    def const(self, name: str) -> npt.NDArray[np.generic] | None:
        t = self.inits.get(name)
        return None if t is None else numpy_helper.to_array(t)

    def put(self, name: str, value: npt.NDArray[np.generic]) -> None:
        self.inits[name] = numpy_helper.from_array(value, name)

    def consumers(self, tensor: str) -> list[onnx.NodeProto]:
        return [n for n in self.nodes if tensor in n.input]

    def producer(self, tensor: str) -> onnx.NodeProto | None:
        return next((n for n in self.nodes if tensor in n.output), None)

    def fresh(self, base: str) -> str:
        taken = self.inits.keys() | {o for n in self.nodes for o in n.output}
        name, i = base, 0
        while name in taken:
            i += 1
            name = f"{base}_{i}"
        return name

    def commit(self) -> onnx.ModelProto:
        g = self.model.graph
        del g.node[:]
        g.node.extend(self.nodes)
        used = {i for n in self.nodes for i in n.input} | self.outputs
        del g.initializer[:]
        g.initializer.extend(t for name, t in self.inits.items() if name in used)
        del g.value_info[:]
        return self.model


def _attr(node: onnx.NodeProto, name: str, default: object) -> object:
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _fold_const_reshapes(g: _Graph) -> None:
    keep = []
    for n in g.nodes:
        data = g.const(n.input[0]) if n.op_type == "Reshape" and len(n.input) == 2 else None
        shape = g.const(n.input[1]) if data is not None else None
        if data is None or shape is None or _attr(n, "allowzero", 0):
            keep.append(n)
            continue
        g.put(n.output[0], data.reshape([int(v) for v in shape.ravel()]))
    g.nodes = keep


def _conv_weights(g: _Graph, conv: onnx.NodeProto) -> tuple[_F32, _F32] | None:
    """(W, B) of a Conv with constant fp32 weights (B zero when absent)."""
    w = g.const(conv.input[1]) if len(conv.input) > 1 else None
    if w is None or w.dtype != np.float32 or w.ndim != 4:
        return None
    b = g.const(conv.input[2]) if len(conv.input) > 2 and conv.input[2] else None
    if len(conv.input) > 2 and conv.input[2] and b is None:
        return None
    bias = np.zeros(w.shape[0], np.float32) if b is None else b.astype(np.float32)
    return w.astype(np.float32), bias


def _set_conv_weights(g: _Graph, conv: onnx.NodeProto, w: _F32, b: _F32) -> None:
    wname, bname = g.fresh(conv.name + "_w"), g.fresh(conv.name + "_b")
    g.put(wname, w.astype(np.float32))
    g.put(bname, b.astype(np.float32))
    del conv.input[1:]
    conv.input.extend([wname, bname])


def _fuse_conv_bn(g: _Graph) -> None:
    for bn in list(g.nodes):
        if bn.op_type != "BatchNormalization" or len(bn.output) != 1:
            continue
        conv = g.producer(bn.input[0])
        params = [g.const(n) for n in bn.input[1:5]]
        if (conv is None or conv.op_type != "Conv" or any(p is None for p in params)
                or len(g.consumers(bn.input[0])) != 1 or bn.input[0] in g.outputs):
            continue
        wb = _conv_weights(g, conv)
        if wb is None:
            continue
        gamma, beta, mean, var = (np.asarray(p, np.float64) for p in params)
        k = gamma / np.sqrt(var + float(_attr(bn, "epsilon", 1e-5)))  # type: ignore[arg-type]  # epsilon is a float attribute
        w, b = wb
        _set_conv_weights(g, conv, (w * k[:, None, None, None]).astype(np.float32),
                          ((b - mean) * k + beta).astype(np.float32))
        conv.output[0] = bn.output[0]
        g.nodes.remove(bn)


def _flip_channels(g: _Graph, prelu: onnx.NodeProto, neg: npt.NDArray[np.bool_]) -> bool:
    """Negate channels ``neg`` of the PRelu's producer and undo it in its consumers."""
    conv = g.producer(prelu.input[0])
    if (conv is None or conv.op_type != "Conv" or len(g.consumers(prelu.input[0])) != 1
            or prelu.output[0] in g.outputs):
        return False
    users = g.consumers(prelu.output[0])
    plans: list[tuple[onnx.NodeProto, _F32, _F32]] = []
    sign = np.where(neg, -1.0, 1.0).astype(np.float32)
    for user in users:
        wb = _conv_weights(g, user) if user.op_type == "Conv" and user.input[0] == prelu.output[0] else None
        if wb is None:
            return False
        w, b = wb
        group = int(_attr(user, "group", 1))  # type: ignore[call-overload]  # group is an int attribute
        if group == 1 and w.shape[1] == sign.size:
            plans.append((user, w * sign[None, :, None, None], b))
        elif group == sign.size and w.shape[0] == sign.size and w.shape[1] == 1:
            plans.append((user, w * sign[:, None, None, None], b))
        else:
            return False
    own = _conv_weights(g, conv)
    if own is None or own[0].shape[0] != sign.size or not users:
        return False
    _set_conv_weights(g, conv, own[0] * sign[:, None, None, None], own[1] * sign)
    for user, w, b in plans:
        _set_conv_weights(g, user, w, b)
    return True


def _rewrite_prelu(g: _Graph) -> None:
    for node in list(g.nodes):
        slope = g.const(node.input[1]) if node.op_type == "PRelu" else None
        if slope is None or slope.dtype != np.float32:
            continue
        s = np.asarray(slope, np.float32).reshape(-1)
        if slope.size > 1 and slope.shape not in ((s.size, 1, 1), (s.size,)):
            continue  # not per-channel over NCHW: leave it
        above = s > 1.0
        if above.any() and (s.size == 1 or not _flip_channels(g, node, above)):
            continue
        s_name = g.fresh(node.name + "_slope")
        g.put(s_name, s.reshape(-1, 1, 1) if s.size > 1 else s.reshape(()))
        scaled = g.fresh(node.name + "_sy")
        at = g.nodes.index(node)
        g.nodes[at : at + 1] = [
            helper.make_node("Mul", [node.input[0], s_name], [scaled], name=node.name + "_mul"),
            helper.make_node("Max", [node.input[0], scaled], [node.output[0]],
                             name=node.name + "_max"),
        ]


def optimize_model(model: onnx.ModelProto) -> onnx.ModelProto:
    """Apply the exact rewrites of the module docstring to ``model`` (in place) and return it."""
    g = _Graph(model)
    _fold_const_reshapes(g)
    _fuse_conv_bn(g)
    _rewrite_prelu(g)
    return g.commit()
