"""The int8 recipe for the built-in SFace: static QDQ quantisation for VNNI CPUs.

Recipe ``int8r1`` (bump :data:`RECIPE_VERSION` when any of it changes; the
version is part of the cache file name and of the model id, so templates
made by another recipe are never compared):

* input graph: the exact-rewrite fp32 graph (``optimize.py``): without the
  rewrite, int8 is *slower* than fp32 because every PRelu still runs on the
  slow fp32 broadcasting path between the int8 convolutions;
* ``quantize_static``, ``QuantFormat.QDQ``, ``per_channel=True``,
  ``reduce_range=False``, activations uint8 (asymmetric), weights int8
  (symmetric): onnxruntime fuses the Q/DQ pairs into ``QLinearConv`` /
  ``QGemm`` running MLAS's u8s8 VNNI kernels;
* only ``Conv`` and ``Gemm`` are quantised; the first
  :data:`EXCLUDED_CONVS` convolutions (the 112x112 and 56x56 layers, where a
  per-layer sensitivity scan showed almost all of the embedding error) stay
  fp32;
* activation ranges: ``CalibrationMethod.Percentile`` (99.999) over the
  aligned sample faces of ``tests/data/faces`` (adults only) and their
  mirror images. The ranges are shipped as a JSON file
  (:data:`BUILTIN_RANGES`, no images, no embeddings), so a device builds
  the same int8 model at first load without any calibration images, and
  ``scripts/int8_ranges`` rebuilds the file
  from the repository's own samples.

Fidelity (tests/recognition/test_int8.py): cosine >= 0.99 against the fp32
graph on every sample face.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt

from .cached import sha256_file
from .errors import ModelFormatError
from .registry import FILES

RECIPE_VERSION = "1"
EXCLUDED_CONVS = 5
PERCENTILE = 99.999
BUILTIN_RANGES = FILES / f"sface-2021dec-int8r{RECIPE_VERSION}-ranges.json"


def recipe_tag(ranges: Path) -> str:
    """``int8r<version>-<ranges sha256[:8]>``: names the cache file and the model id."""
    return f"int8r{RECIPE_VERSION}-{sha256_file(ranges)[:8]}"


def quantized_path(optimized: Path, ranges: Path) -> Path:
    """Where the int8 build of ``optimized`` with ``ranges`` is cached (beside it)."""
    return optimized.with_name(f"{optimized.stem}-{recipe_tag(ranges)}.onnx")


def _excluded(model_path: Path) -> list[str]:
    import onnx  # noqa: PLC0415 - +27 MB RSS: only while building the int8 file (cache miss)

    model = onnx.load(str(model_path), load_external_data=False)
    convs = [n.name for n in model.graph.node if n.op_type == "Conv"]
    if len(convs) <= EXCLUDED_CONVS:
        raise ModelFormatError(f"{model_path.name}: too few convolutions for the int8 recipe")
    return convs[:EXCLUDED_CONVS]


class _DropOnnxruntimeAdvice(logging.Filter):
    """onnxruntime.quantization logs pre-processing advice on the root logger: not ours to show."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "onnxruntime" not in record.pathname


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    root = logging.getLogger()
    drop = _DropOnnxruntimeAdvice()
    root.addFilter(drop)
    try:
        yield
    finally:
        root.removeFilter(drop)


def _quantize(source: Path, output: Path, ranges: Path, reader: object | None) -> None:
    """Run onnxruntime's quantize_static with the recipe (reader None: ranges must exist)."""
    with _quiet():
        _quantize_static(source, output, ranges, reader)


def _quantize_static(source: Path, output: Path, ranges: Path, reader: object | None) -> None:
    from onnxruntime.quantization import (  # noqa: PLC0415 - heavy, only when building
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    quantize_static(
        str(source), str(output), reader,
        quant_format=QuantFormat.QDQ,
        op_types_to_quantize=["Conv", "Gemm"],
        per_channel=True,
        reduce_range=False,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        nodes_to_exclude=_excluded(source),
        calibrate_method=CalibrationMethod.Percentile,
        extra_options={"CalibPercentile": PERCENTILE},
        calibration_cache_path=str(ranges),
    )


def _blobs(crops: Iterable[npt.NDArray[np.uint8]]) -> Iterator[dict[str, npt.NDArray[np.float32]]]:
    """SFace inputs (RGB 0-255 NCHW) for each aligned BGR crop and its mirror image."""
    for crop in crops:
        for view in (crop, crop[:, ::-1]):
            rgb = view[..., ::-1].astype(np.float32).transpose(2, 0, 1)[None]
            yield {"data": np.ascontiguousarray(rgb)}


def build_ranges(optimized: Path, crops: Iterable[npt.NDArray[np.uint8]], out: Path) -> None:
    """Calibrate activation ranges of ``optimized`` on aligned 112x112 BGR ``crops``.

    Writes onnxruntime's calibration-cache JSON to ``out`` (replacing it),
    with sorted keys so the same crops give the same bytes.
    """
    from onnxruntime.quantization import CalibrationDataReader  # noqa: PLC0415 - heavy

    class _Reader(CalibrationDataReader):  # type: ignore[misc]  # onnxruntime ships no type hints
        def __init__(self) -> None:
            self._it = _blobs(crops)

        def get_next(self) -> dict[str, npt.NDArray[np.float32]] | None:
            return next(self._it, None)

    with tempfile.TemporaryDirectory(prefix="facegate-int8-") as tmp:
        cache = Path(tmp) / "ranges.json"
        _quantize(optimized, Path(tmp) / "model.onnx", cache, _Reader())
        # Sorted keys: onnxruntime writes tensors in set order, which varies per run.
        data = json.loads(cache.read_text())
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(data, sort_keys=True, indent=1) + "\n")


def quantize_cached(optimized: Path, ranges: Path = BUILTIN_RANGES) -> Path:
    """The int8 build of the optimised fp32 graph ``optimized``, cached beside it.

    Deterministic: the activation ranges come from the ``ranges`` file, not
    from a calibration run, so the same inputs give the same bytes. Raises
    ModelFormatError when the ranges file is missing or does not fit the graph.
    """
    if not ranges.is_file():
        raise ModelFormatError(f"int8 needs the calibration ranges file {ranges}")
    target = quantized_path(optimized, ranges)
    if target.is_file():
        return target
    with tempfile.TemporaryDirectory(prefix="facegate-int8-", dir=optimized.parent) as tmp:
        # A private copy: quantize_static rewrites the cache file when it disagrees with it.
        cache = Path(tmp) / "ranges.json"
        shutil.copyfile(ranges, cache)
        out = Path(tmp) / "model.onnx"
        try:
            _quantize(optimized, out, cache, None)
        except (ValueError, KeyError) as exc:
            raise ModelFormatError(f"int8 recipe does not fit {optimized.name}: {exc}") from None
        os.replace(out, target)
    return target
