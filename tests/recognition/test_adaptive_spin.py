"""``recognizer_spin = "auto"``: each run goes to the session with the lower recent latency."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from facegate.drivers.models.embedder import FaceEmbedder
from facegate.drivers.models.loader import LoadedModels
from facegate.drivers.models.registry import BUILTIN_RECOGNIZER
from facegate.drivers.models.session import make_session
from facegate.drivers.models.spin import AdaptiveSpin


class _Timed:
    """A stand-in session whose runs 'take' a settable time on a fake timer."""

    def __init__(self, clock: list[float], cost: float, tag: float) -> None:
        self.clock, self.cost, self.tag = clock, cost, tag

    def run(self, _names: Any, _feeds: dict[str, Any]) -> list[Any]:
        self.clock[0] += self.cost
        return [np.full((1, 4), self.tag, np.float32)]

    def get_inputs(self) -> list[str]:
        return ["x"]

    def get_outputs(self) -> list[str]:
        return ["y"]


def _rig() -> tuple[AdaptiveSpin, _Timed, _Timed]:
    clock = [0.0]
    quiet, spin = _Timed(clock, 4.5, 0.0), _Timed(clock, 3.3, 1.0)
    adaptive = AdaptiveSpin(quiet, spin, explore_every=8, timer=lambda: clock[0])  # type: ignore[arg-type]  # stand-ins at the session seam
    return adaptive, quiet, spin


def test_prefers_spinning_while_it_is_faster_then_follows_load() -> None:
    adaptive, _, spin = _rig()
    for _ in range(64):
        adaptive.run(None, {})
    assert adaptive.preferred == AdaptiveSpin.SPIN
    assert adaptive.counts[AdaptiveSpin.SPIN] > 50  # the faster one takes the bulk
    assert adaptive.counts[AdaptiveSpin.QUIET] >= 64 // 8 - 1  # the other is re-measured
    # Other work now competes for the cores: spinning gets slower than not spinning.
    spin.cost = 11.0
    for _ in range(64):
        adaptive.run(None, {})
    assert adaptive.preferred == AdaptiveSpin.QUIET
    quiet_before = adaptive.counts[AdaptiveSpin.QUIET]
    for _ in range(32):
        adaptive.run(None, {})
    assert adaptive.counts[AdaptiveSpin.QUIET] - quiet_before >= 28
    # The load goes away again: exploration notices and spinning comes back.
    spin.cost = 3.3
    for _ in range(128):
        adaptive.run(None, {})
    assert adaptive.preferred == AdaptiveSpin.SPIN


def test_explore_every_is_validated() -> None:
    clock = [0.0]
    with pytest.raises(ValueError, match="explore_every"):
        AdaptiveSpin(_Timed(clock, 1, 0), _Timed(clock, 1, 1), explore_every=1)  # type: ignore[arg-type]  # stand-ins


def test_auto_build_embeds_exactly_like_a_single_session(fp32_models: LoadedModels) -> None:
    """Both sessions are the same model: whichever runs, the embedding is the same."""
    path = fp32_models.recognizer_path
    single = FaceEmbedder(make_session(path, intra_threads=2), BUILTIN_RECOGNIZER)
    adaptive = AdaptiveSpin(
        make_session(path, intra_threads=2), make_session(path, intra_threads=2, spin=True), explore_every=2
    )
    auto = FaceEmbedder(adaptive, BUILTIN_RECOGNIZER)
    rng = np.random.default_rng(7)
    crops = rng.integers(0, 255, (6, 112, 112, 3), dtype=np.uint8)
    expected = single.embed(crops)
    for crop, want in zip(crops, expected, strict=True):
        np.testing.assert_allclose(auto.embed(crop)[0], want, atol=1e-5)
    assert min(adaptive.counts) >= 1  # both sessions actually ran
