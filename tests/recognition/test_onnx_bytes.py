"""Issue 16: the scan's graphs are written without the onnx package, and mean what onnx.helper built.

The tests import onnx (the device does not): the bytes must parse, pass the checker,
carry the same graph as the former onnx.helper construction, and score bit-identically.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from facegate.drivers.models import LoadedModels
from facegate.handlers.recognition import onnx_bytes as ob
from facegate.handlers.recognition.scan import (
    NBITS_BLOCK,
    _options,
    dynamic_model,
    nbits_model,
    nbits_session,
    quantise_4bit,
)
from onnx import TensorProto, helper, numpy_helper


def _unit(rng: np.random.Generator, n: int, d: int = 128) -> np.ndarray:
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _helper_model(nodes: list[onnx.NodeProto], inputs: list[onnx.ValueInfoProto], out: onnx.ValueInfoProto,
                  inits: list[onnx.TensorProto]) -> onnx.ModelProto:
    """The construction scan.py used before issue 16 round 3 (the reference)."""
    graph = helper.make_graph(nodes, "gallery_scan", inputs, [out], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21),
                                                    helper.make_opsetid("com.microsoft", 1)])
    model.ir_version = 10
    return model


def _helper_nbits(packed: np.ndarray, scales: np.ndarray) -> onnx.ModelProto:
    n, d = packed.shape[0], packed.shape[1] * packed.shape[2] * 2
    return _helper_model(
        [helper.make_node("MatMulNBits", ["A", "B", "S"], ["Y"], domain="com.microsoft",
                          K=d, N=n, bits=4, block_size=NBITS_BLOCK, accuracy_level=4)],
        [helper.make_tensor_value_info("A", TensorProto.FLOAT, [1, d])],
        helper.make_tensor_value_info("Y", TensorProto.FLOAT, [1, n]),
        [numpy_helper.from_array(packed, "B"), numpy_helper.from_array(scales.reshape(-1), "S")],
    )


def _helper_dynamic() -> onnx.ModelProto:
    return _helper_model(
        [helper.make_node("MatMulInteger", ["A", "B", "azp"], ["Y"])],
        [helper.make_tensor_value_info("A", TensorProto.UINT8, ["N", "D"]),
         helper.make_tensor_value_info("B", TensorProto.INT8, ["D", 1])],
        helper.make_tensor_value_info("Y", TensorProto.INT32, ["N", 1]),
        [helper.make_tensor("azp", TensorProto.UINT8, [], [128])],
    )


def _assert_same_meaning(ours: bytes, ref: onnx.ModelProto) -> onnx.ModelProto:
    model = onnx.load_from_string(ours)
    onnx.checker.check_model(model)
    assert model.ir_version == ref.ir_version
    assert [(o.domain, o.version) for o in model.opset_import] == \
        [(o.domain, o.version) for o in ref.opset_import]
    g, r = model.graph, ref.graph
    assert g.name == r.name
    assert [n.SerializeToString() for n in g.node] == [n.SerializeToString() for n in r.node]
    assert [v.SerializeToString() for v in g.input] == [v.SerializeToString() for v in r.input]
    assert [v.SerializeToString() for v in g.output] == [v.SerializeToString() for v in r.output]
    assert [(t.name, t.data_type, list(t.dims)) for t in g.initializer] == \
        [(t.name, t.data_type, list(t.dims)) for t in r.initializer]
    for t, u in zip(g.initializer, r.initializer, strict=True):
        a, b = numpy_helper.to_array(t), numpy_helper.to_array(u)
        assert a.dtype == b.dtype and np.array_equal(a, b)
    return model


def _filled(ours: bytes, data: dict[str, np.ndarray]) -> bytes:
    """``ours`` with each external placeholder replaced by the data the session is given."""
    model = onnx.load_from_string(ours)
    for t in model.graph.initializer:
        assert t.data_location == TensorProto.EXTERNAL and not t.raw_data
        assert {e.key: e.value for e in t.external_data} == {"location": ob.EXTERNAL_LOCATION}
        t.CopyFrom(numpy_helper.from_array(data[t.name], t.name))
    return model.SerializeToString()


def _run(model: bytes, feeds: dict[str, np.ndarray]) -> np.ndarray:
    sess = ort.InferenceSession(model, _options(1), providers=["CPUExecutionProvider"])
    return np.asarray(sess.run(None, feeds)[0])


@pytest.mark.timeout(120)
def test_nbits_graph_means_what_onnx_helper_built_and_scores_bit_identically() -> None:
    rng = np.random.default_rng(16)
    rows = _unit(rng, 5_003)  # an odd, partial-segment size
    packed, scales = quantise_4bit(rows)
    ours, ref = nbits_model(packed, scales), _helper_nbits(packed, scales)
    # B and S are placeholders (issue 16: the data never becomes model bytes); with the data
    # the session is given filled in, the graph is the one onnx.helper built.
    model = _assert_same_meaning(_filled(ours, {"B": packed, "S": scales.reshape(-1)}), ref)
    assert {a.name: a.i for a in model.graph.node[0].attribute} == {
        "K": 128, "N": 5_003, "bits": 4, "block_size": NBITS_BLOCK, "accuracy_level": 4}
    session, _data = nbits_session(packed, scales, 1)
    for q in np.concatenate([_unit(rng, 3), rows[:3]]):
        feeds = {"A": q.reshape(1, -1)}
        y_ours, y_ref = np.asarray(session.run(None, feeds)[0]), _run(ref.SerializeToString(), feeds)
        assert y_ours.dtype == np.float32 and y_ours.shape == (1, 5_003)
        assert np.array_equal(y_ours, y_ref)  # bit-identical
        # ...and a real scan: the mated row scores highest.
    assert int(np.argmax(session.run(None, {"A": rows[42].reshape(1, -1)})[0])) == 42


@pytest.mark.timeout(120)
def test_dynamic_graph_means_what_onnx_helper_built_and_scores_bit_identically() -> None:
    rng = np.random.default_rng(17)
    ours, ref = dynamic_model(), _helper_dynamic()
    _assert_same_meaning(ours, ref)
    rows = np.clip(np.rint(_unit(rng, 2_000) * 127) + 128, 0, 255).astype(np.uint8)
    for _ in range(3):
        q = np.clip(np.rint(_unit(rng, 1)[0] * 127), -127, 127).astype(np.int8).reshape(-1, 1)
        feeds = {"A": rows, "B": q}
        y_ours = _run(ours, feeds)
        assert y_ours.dtype == np.int32 and np.array_equal(y_ours, _run(ref.SerializeToString(), feeds))
        expected = (rows.astype(np.int64) - 128) @ q.astype(np.int64)
        assert np.array_equal(y_ours, expected)


def test_writer_encodes_varints_negative_ints_and_refuses_what_it_cannot_write() -> None:
    assert ob._varint(0) == b"\x00" and ob._varint(300) == b"\xac\x02"
    assert ob._varint(-1) == b"\xff" * 9 + b"\x01"  # int64 two's complement, 10 bytes
    node = ob.Node("Foo", ["x"], ["y"], domain="ai.example", attrs={"neg": -5, "big": 1 << 40})
    built = ob.model([node], [ob.Value("x", ob.FLOAT, [2, "n"])], [ob.Value("y", ob.FLOAT, [2])],
                     {"w": np.arange(6, dtype=np.int32).reshape(2, 3)}, name="g",
                     opsets={"": 21, "ai.example": 1})
    m = onnx.load_from_string(built)
    assert {a.name: a.i for a in m.graph.node[0].attribute} == {"neg": -5, "big": 1 << 40}
    assert m.graph.node[0].domain == "ai.example"
    dims = m.graph.input[0].type.tensor_type.shape.dim
    assert (dims[0].dim_value, dims[1].dim_param) == (2, "n")
    assert np.array_equal(numpy_helper.to_array(m.graph.initializer[0]), np.arange(6).reshape(2, 3))
    with pytest.raises(TypeError, match="only int attributes"):
        ob.Node("Foo", ["x"], ["y"], attrs={"f": 1.5}).encode()  # type: ignore[dict-item]  # the refused case
    with pytest.raises(TypeError, match="unsupported dtype float64"):
        ob.tensor("w", np.zeros(2))


_WARM = """
import sys
from pathlib import Path
import numpy as np
from facegate.drivers.models import ModelOptions, load_models
from facegate.handlers.recognition import Matcher
from facegate.handlers.recognition.scan import SEGMENT
loaded = load_models(ModelOptions(cache_dir=Path(sys.argv[1])))
rng = np.random.default_rng(3)
x = rng.standard_normal((SEGMENT + 10, 128)).astype(np.float32)
x /= np.linalg.norm(x, axis=1, keepdims=True)
mid = loaded.embedder.model_id
m = Matcher(mid, 128, int8_min_rows=1_000, threads=1, prepack=True)
m.add_batch([f"s{i}" for i in range(len(x))], [f"t{i}" for i in range(len(x))], x, mid)
m.prepare()
assert m._scan.packed_segments == 2 and m._scan.pending == 0, m.kernel
assert m.search(x[7], k=1).best.template_id == "t7"
print(sorted(k for k in sys.modules if k == "onnx" or k.startswith("onnx.")))
"""


def _python(code: str, *args: str) -> str:
    env = {**os.environ, "ORT_DISABLE_TELEMETRY": "1"}
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], capture_output=True,
                          text=True, timeout=240, env=env, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip().splitlines()[-1]


@pytest.mark.timeout(300)
def test_warm_start_and_a_packed_matcher_do_not_import_onnx(models: LoadedModels, model_cache: Path) -> None:
    """The ``models`` fixture warmed the cache; a fresh process then never imports onnx (+27 MB RSS)."""
    assert models.embedder.model_id  # the cache is warm
    assert _python(_WARM, str(model_cache)) == "[]"


@pytest.mark.timeout(120)
def test_root_import_does_not_import_amqtt_or_onnx() -> None:
    code = """
    import sys
    import facegate.runtime.app.root
    import facegate.runtime.mqtt
    print(sorted({k.split(".")[0] for k in sys.modules} & {"amqtt", "onnx"}))
    """
    assert _python(code) == "[]"
