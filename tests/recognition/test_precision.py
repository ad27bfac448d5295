"""``recognizer_precision = "auto"`` (issue 16): fp32 unless int8 is measured clearly faster; pinned.

The timing probe (``loader.probe_precision``) is the lowest seam: these tests replace
it with fixed results and count its calls. Everything else is real: the model
files, the conversion cache, the pin file, and (for stickiness) a real encrypted
store whose templates are loaded by the real ``GalleryLoader``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from facegate.drivers.models import BUILTIN_RECOGNIZER, LoadedModels, ModelOptions, load_models
from facegate.drivers.models import loader as loader_mod
from facegate.drivers.models.cached import converted_path
from facegate.drivers.models.precision import (
    FP32,
    INT8,
    INT8_MIN_GAIN,
    BuildPin,
    PrecisionChoice,
    decide_precision,
)
from facegate.handlers.recognition.engine import RecognitionEngine
from facegate.handlers.recognition.gallery_load import GalleryLoader
from facegate.runtime.clock import ManualClock
from facegate.runtime.config.recognition import RecognitionSection
from facegate.storage import KekSource, Store

from tests.fixtures.stores import kek, kek_bytes  # noqa: F401 - fixtures used by name
from tests.recognition.conftest import face_bytes

INT8_KEY = loader_mod.INT8_CANDIDATE


def test_auto_is_fp32_unless_int8_is_clearly_faster() -> None:
    # The lead's idle figures on the AMD Zen 4 with AVX-512 VNNI: int8 slower: fp32.
    assert decide_precision({"onnxruntime fp32": 8.9, "opencv fp32": 8.2, INT8_KEY: 12.0},
                            int8_key=INT8_KEY) == FP32
    # Faster, but inside the margin (8% < 15%): the accurate build.
    assert decide_precision({"onnxruntime fp32": 9.0, "opencv fp32": 8.2, INT8_KEY: 7.55},
                            int8_key=INT8_KEY) == FP32
    # Clearly faster than the fastest fp32 engine: int8 (the margin is against the minimum).
    fast = (1 - INT8_MIN_GAIN) * 8.2 - 0.01
    assert decide_precision({"onnxruntime fp32": 20.0, "opencv fp32": 8.2, INT8_KEY: fast},
                            int8_key=INT8_KEY) == INT8
    # A probe taken on a busy machine measures the contention: fp32, whatever it read.
    assert decide_precision({"opencv fp32": 16.3, INT8_KEY: 9.0}, int8_key=INT8_KEY,
                            busy=True) == FP32
    # Nothing to compare: fp32.
    assert decide_precision({"opencv fp32": 8.2}, int8_key=INT8_KEY) == FP32
    assert decide_precision({INT8_KEY: 1.0}, int8_key=INT8_KEY) == FP32


@pytest.fixture(scope="module")
def built_cache(model_cache: Path) -> Path:
    """The session cache with every build made once (fp32 fold, rewrite, int8)."""
    load_models(ModelOptions(cache_dir=model_cache, recognizer_precision="int8"))
    return model_cache


def _first_start_cache(built: Path, dest: Path, *, plain: bool = False, int8: bool = True) -> Path:
    """A cache dir sharing the built files; without the plain recogniser fold (``plain=False``)
    it looks like a first start (the loader converts the fold again, a second or two)."""
    dest.mkdir()
    fold = converted_path(BUILTIN_RECOGNIZER.path, BUILTIN_RECOGNIZER.sha256, built)
    for f in built.glob("*.onnx"):
        if (f == fold and not plain) or ("int8r" in f.name and not int8):
            continue
        (dest / f.name).symlink_to(f)
    return dest


class FakeProbe:
    """``probe_precision`` replaced: returns ``result``'s build and counts its calls."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, precision: str) -> None:
        self.precision = precision
        self.calls = 0
        monkeypatch.setattr(loader_mod, "probe_precision", self)

    def __call__(self, *_args: object) -> PrecisionChoice:
        self.calls += 1
        return PrecisionChoice(self.precision, "probe", {"fake": 1.0}, 0.5)


@pytest.fixture
def probe(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeProbe]:
    yield FakeProbe(monkeypatch, FP32)


def test_first_start_measures_and_pins_later_starts_do_not(
    built_cache: Path, tmp_path: Path, probe: FakeProbe
) -> None:
    cache = _first_start_cache(built_cache, tmp_path / "c")
    probe.precision = INT8
    first = load_models(ModelOptions(cache_dir=cache))
    assert probe.calls == 1 and first.precision.source == "probe"
    assert first.model_id.startswith(BUILTIN_RECOGNIZER.model_id + ":int8r")
    assert BuildPin(cache).get(BUILTIN_RECOGNIZER.model_id) is not None
    # A later start (new library version, quieter machine, ...) where the probe would say fp32.
    probe.precision = FP32
    again = load_models(ModelOptions(cache_dir=cache))
    assert probe.calls == 1, "a pinned build is never measured again"
    assert again.precision.source == "pinned" and again.model_id == first.model_id
    # An explicit setting wins over the pin (the operator re-enrols).
    forced = load_models(ModelOptions(cache_dir=cache, recognizer_precision="fp32"))
    assert forced.model_id == BUILTIN_RECOGNIZER.model_id and forced.precision.source == "config"
    assert probe.calls == 1


@pytest.mark.parametrize(("int8_file", "want"), [(True, INT8), (False, FP32)])
def test_a_device_from_before_pinning_keeps_the_build_its_cache_shows(
    built_cache: Path, tmp_path: Path, probe: FakeProbe, int8_file: bool, want: str
) -> None:
    """No pin, but a converted fold from an earlier start: the old rule made the int8 file
    exactly when it ran int8 (VNNI), so its templates are of that build: keep it, never probe."""
    cache = _first_start_cache(built_cache, tmp_path / "c", plain=True, int8=int8_file)
    probe.precision = FP32 if want == INT8 else INT8  # the probe would switch it
    got = load_models(ModelOptions(cache_dir=cache))
    assert probe.calls == 0
    assert got.precision == PrecisionChoice(want, "earlier start")
    assert (":int8r" in got.model_id) == (want == INT8)
    pinned = BuildPin(cache).get(BUILTIN_RECOGNIZER.model_id)
    assert pinned is not None and pinned.precision == want


def _engine(models: LoadedModels) -> RecognitionEngine:
    return RecognitionEngine(RecognitionSection(), models)


@pytest.mark.asyncio
async def test_stored_templates_keep_their_build_when_the_probe_changes_its_mind(
    built_cache: Path, tmp_path: Path, probe: FakeProbe, kek: KekSource,  # noqa: F811 - fixture
) -> None:
    """Enrol on a first start that measured fp32; restart where int8 would now win the
    probe: the device still runs fp32 and its real store's templates all load and match."""
    cache = _first_start_cache(built_cache, tmp_path / "c")
    probe.precision = FP32
    first = _engine(load_models(ModelOptions(cache_dir=cache)))
    assert first.model_id == BUILTIN_RECOGNIZER.model_id
    emb = await first.embed_image(face_bytes("obama.jpg"))
    async with Store(tmp_path / "g.db", kek) as store:
        await store.gallery.enroll("S-1", emb.embedding[None], emb.model_id)

    probe.precision = INT8
    second = _engine(load_models(ModelOptions(cache_dir=cache)))
    assert probe.calls == 1 and second.model_id == first.model_id
    async with Store(tmp_path / "g.db", kek) as store:
        await GalleryLoader(second, store, clock=ManualClock()).load()
        assert second.matcher.subject_count == 1
        probe_emb = await second.embed_image(face_bytes("obama.jpg"))
        best = second.matcher.search(probe_emb.embedding, k=2).best
        assert best is not None and best.subject_id == "S-1"
    # Even a lost pin does not switch it: the probe that chose fp32 left no int8 file.
    BuildPin(cache).path.unlink()
    third = load_models(ModelOptions(cache_dir=cache))
    assert probe.calls == 1 and third.model_id == first.model_id
    assert third.precision.source == "earlier start"


def test_the_first_pin_wins(tmp_path: Path) -> None:
    """Two processes starting together on one cache (run and enroll) must agree on the build."""
    pin = BuildPin(tmp_path)
    first = pin.put("m@1", PrecisionChoice(INT8, "probe", {"x": 1.0}, 0.3))
    assert first.precision == INT8 and first.source == "probe"
    second = pin.put("m@1", PrecisionChoice(FP32, "probe", {"x": 2.0}, 0.3))
    assert (second.precision, second.source) == (INT8, "pinned")
    # Another model's pin joins the file without touching the first.
    assert pin.put("u@2", PrecisionChoice(FP32, "only")).precision == FP32
    got = pin.get("m@1")
    assert got is not None and got.precision == INT8
    # An unreadable file is "no pin" (the probe runs again), never an error.
    pin.path.write_text("{not json")
    assert pin.get("m@1") is None
