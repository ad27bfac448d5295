"""How many agreeing frames a grant needs, from the strength of the evidence.

The fixed rule asks ``k`` frames (3 by default: ~67 ms of frames at 30 fps
before the third can even arrive). The adaptive rule (``[recognition.decision]``
``fast_k``, ``fast_score``, ``fast_margin``, ``weak_k``, ``weak_band``,
``weak_margin``) asks:

- **fast_k** frames (>= 2, so the stillness check still sees motion) when each
  of the last ``fast_k`` votes scores >= ``fast_score`` with a margin over the
  runner-up subject >= ``fast_margin``, and no frame in the window failed a
  liveness check (the frame liveness checks passed on every vote; the
  stillness check over the chosen frames is applied afterwards as always);
- **weak_k** frames when any of the last ``k`` votes is within ``weak_band``
  of the threshold or has a margin under ``weak_margin``;
- **k** otherwise.

``fast_k = 0`` turns the fast path off and ``weak_k = 0`` the weak path,
which gives back the fixed rule exactly. The FMR the fast path costs is
measured on the devset by ``benches/adaptive_fmr.py`` (docs/performance.md).
"""

from __future__ import annotations

from collections.abc import Sequence

from ...runtime.config.recognition import DecisionSettings
from .pipeline import FrameAnalysis


def margin_of(a: FrameAnalysis) -> float:
    """Best score minus the runner-up subject's (best + 1 when there is no runner-up)."""
    res = a.search
    if res is None or res.best is None:
        return 0.0
    second = res.runner_up
    return res.best.score - (second.score if second is not None else -1.0)


def score_of(a: FrameAnalysis) -> float:
    res = a.search
    return res.best.score if res is not None and res.best is not None else -1.0


def _strong(s: DecisionSettings, a: FrameAnalysis) -> bool:
    return (
        score_of(a) >= s.fast_score
        and margin_of(a) >= s.fast_margin
        and all(r.passed for r in a.liveness)
    )


def required_frames(
    s: DecisionSettings, votes: Sequence[FrameAnalysis], threshold: float, *, liveness_failed: bool
) -> int:
    """Frames this subject's ``votes`` (oldest first, all above threshold) must number."""
    if (
        s.fast_k >= 2
        and not liveness_failed
        and len(votes) >= s.fast_k
        and all(_strong(s, a) for a in votes[-s.fast_k :])
    ):
        return min(s.fast_k, s.k)
    if s.weak_k > s.k and any(
        score_of(a) < threshold + s.weak_band or margin_of(a) < s.weak_margin
        for a in votes[-s.k :]
    ):
        return s.weak_k
    return s.k
