"""A minimal ONNX ModelProto writer: the subset the gallery scan hands to onnxruntime.

The scan builds one-node graphs (``MatMulNBits``, ``MatMulInteger``) with a few
initializers. Building them with the ``onnx`` package costs ~27 MB of RSS at
start (issue 16), so this module writes the protobuf wire format directly:
varints and length-delimited fields, nothing else. Field numbers are those of
``onnx/onnx.proto`` (ModelProto, GraphProto, NodeProto, AttributeProto,
ValueInfoProto, TypeProto.Tensor, TensorShapeProto, TensorProto,
OperatorSetIdProto). Initializers are written as ``raw_data`` (little-endian,
as ONNX requires), or, for ``external`` ones, as a placeholder (dims, type,
``data_location = EXTERNAL``) whose data the caller hands onnxruntime at
session creation (``SessionOptions.add_external_initializers``): a large
initializer then never exists as model bytes nor as onnxruntime's parsed copy
of them (issue 16: ~10 MB of a 100k gallery's load peak).

Only int attributes are supported; anything else is a ``TypeError`` here, not a
malformed model at onnxruntime.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

# TensorProto.DataType values.
FLOAT = 1
UINT8 = 2
INT8 = 3
INT32 = 6
_DTYPES: dict[np.dtype[np.generic], int] = {
    np.dtype(np.float32): FLOAT, np.dtype(np.uint8): UINT8,
    np.dtype(np.int8): INT8, np.dtype(np.int32): INT32,
}
_ATTR_INT = 2  # AttributeProto.AttributeType.INT
_VARINT, _LEN = 0, 2
_U64 = (1 << 64) - 1


def _varint(value: int) -> bytes:
    """Base-128 varint; a negative int64 is written as its 64-bit two's complement."""
    v = value & _U64
    out = bytearray()
    while v > 0x7F:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def _int(num: int, value: int) -> bytes:
    return _varint(num << 3 | _VARINT) + _varint(value)


def _bytes(num: int, value: bytes) -> bytes:
    return _varint(num << 3 | _LEN) + _varint(len(value)) + value


def _str(num: int, value: str) -> bytes:
    return _bytes(num, value.encode("utf-8"))


@dataclass(frozen=True)
class Node:
    """A NodeProto: ``op_type(inputs) -> outputs`` with int attributes."""

    op_type: str
    inputs: Sequence[str]
    outputs: Sequence[str]
    domain: str = ""
    attrs: Mapping[str, int] = field(default_factory=dict)

    def encode(self) -> bytes:
        out = b"".join(_str(1, i) for i in self.inputs) + b"".join(_str(2, o) for o in self.outputs)
        out += _str(4, self.op_type)
        for name, value in sorted(self.attrs.items()):  # sorted, as onnx.helper.make_node
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"attribute {name!r}: only int attributes are supported")
            out += _bytes(5, _str(1, name) + _int(3, value) + _int(20, _ATTR_INT))
        if self.domain:
            out += _str(7, self.domain)
        return out


@dataclass(frozen=True)
class Value:
    """A ValueInfoProto of a tensor: element type and shape (ints fixed, strings symbolic)."""

    name: str
    elem_type: int
    shape: Sequence[int | str]

    def encode(self) -> bytes:
        dims = b"".join(
            _bytes(1, _str(2, d) if isinstance(d, str) else _int(1, d)) for d in self.shape
        )
        tensor_type = _int(1, self.elem_type) + _bytes(2, dims)
        return _str(1, self.name) + _bytes(2, _bytes(1, tensor_type))


def tensor(name: str, array: npt.NDArray[np.generic]) -> bytes:
    """A TensorProto with ``raw_data`` (dims, data_type, name, raw_data)."""
    dtype = np.dtype(array.dtype)
    if dtype not in _DTYPES:
        raise TypeError(f"initializer {name!r}: unsupported dtype {dtype}")
    data = np.ascontiguousarray(array)  # note: makes a 0-d array 1-d; dims come from ``array``
    if sys.byteorder != "little":  # pragma: no cover - every supported target is little-endian
        data = data.byteswap()
    dims = b"".join(_int(1, d) for d in array.shape)
    return dims + _int(2, _DTYPES[dtype]) + _str(8, name) + _bytes(9, data.tobytes())


#: TensorProto.DataLocation.EXTERNAL
_EXTERNAL = 1
#: The placeholder's ``location``: never opened (the data is supplied at session creation).
EXTERNAL_LOCATION = "supplied-at-session-creation"


def external_tensor(name: str, array: npt.NDArray[np.generic]) -> bytes:
    """A TensorProto of ``array``'s dims and type whose data is external (not in the model)."""
    dtype = np.dtype(array.dtype)
    if dtype not in _DTYPES:
        raise TypeError(f"initializer {name!r}: unsupported dtype {dtype}")
    dims = b"".join(_int(1, d) for d in array.shape)
    where = _bytes(13, _str(1, "location") + _str(2, EXTERNAL_LOCATION))
    return dims + _int(2, _DTYPES[dtype]) + _str(8, name) + where + _int(14, _EXTERNAL)


def model(nodes: Sequence[Node], inputs: Sequence[Value], outputs: Sequence[Value],
          initializers: Mapping[str, npt.NDArray[np.generic]], *, name: str,
          opsets: Mapping[str, int], ir_version: int = 10,
          external: Mapping[str, npt.NDArray[np.generic]] | None = None) -> bytes:
    """A serialized ModelProto of one graph (what ``ort.InferenceSession`` accepts as bytes).

    ``external`` initializers are placeholders only (see module doc): the session must be
    given their data, under the same names, by ``add_external_initializers``.
    """
    graph = b"".join(_bytes(1, n.encode()) for n in nodes) + _str(2, name)
    graph += b"".join(_bytes(5, tensor(k, v)) for k, v in initializers.items())
    graph += b"".join(_bytes(5, external_tensor(k, v)) for k, v in (external or {}).items())
    graph += b"".join(_bytes(11, v.encode()) for v in inputs)
    graph += b"".join(_bytes(12, v.encode()) for v in outputs)
    out = _int(1, ir_version) + _bytes(7, graph)
    out += b"".join(_bytes(8, _str(1, domain) + _int(2, version)) for domain, version in opsets.items())
    return out
