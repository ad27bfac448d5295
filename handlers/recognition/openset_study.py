"""Open-set study (issue 15 round 3): templates per subject, per-frame thresholds, k-of-n.

Same split as :mod:`.openset` (identities sorted, every third a stranger), but
restricted to the identities with at least ``ENROL_MAX + 1`` images, so every
variant below probes the **same** mated images (each identity's images from
index ``ENROL_MAX`` on; every image of a stranger is a non-mated probe).

Template rules (what a subject enrolled from ``n`` photos keeps):

* ``1 photo``: the first image's fused template (what the device does today);
* ``2 photos, max``: both fused templates; the subject scores the maximum
  (the matcher's rule across templates);
* ``2 photos, mean``: one template, the re-normalised mean of the two.

For each rule and each per-comparison FMR in :data:`SWEEP_FMRS` (and the
device's ``target_fmr / subjects``) the threshold is read from the table and
reported:

* per image: FNIR (gate refusals included) and non-mated probes granted;
* per approach, the k-of-n rule: an identity's probe images stand for the
  frames of one approach (identities with at least ``k`` probes); the approach
  is granted to a subject when at least ``k`` of its gate-passed images are
  granted to that same subject. Approach FNIR and strangers granted.

Photos of one person differ far more than the frames of one approach, whose
scores are strongly correlated, so the approach figures are a **lower** bound
of the per-approach FPIR; the per-image figures are its upper bound (frames
fully correlated). Only counts leave this module.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from .evaluation import Sample
from .fusion import fuse_rows
from .openset import _usable
from .reasons import Reason
from .thresholds import CalibrationTable

ENROL_MAX = 2
SWEEP_FMRS = (1e-5, 3e-5, 1e-4, 3e-4, 1e-3)
TEMPLATE_RULES = ("1 photo", "2 photos, max", "2 photos, mean")


@dataclass(frozen=True, slots=True)
class StudyRow:
    """Counts at one threshold for one template rule (no embeddings, no names)."""

    rule: str
    per_comparison_fmr: float
    threshold: float
    subjects: int
    templates: int
    mated_probes: int
    mated_not_granted: int
    stranger_probes: int
    strangers_granted: int
    k: int
    approaches: int
    approaches_not_granted: int
    stranger_approaches: int
    stranger_approaches_granted: int

    @property
    def fnir(self) -> float:
        return self.mated_not_granted / self.mated_probes if self.mated_probes else 0.0

    @property
    def approach_fnir(self) -> float:
        return self.approaches_not_granted / self.approaches if self.approaches else 0.0

    def line(self) -> str:
        return (f"{self.rule:<15} FMR {self.per_comparison_fmr:8.2e} t {self.threshold:.4f} | "
                f"image FNIR {100 * self.fnir:5.2f}% of {self.mated_probes}, strangers "
                f"granted {self.strangers_granted}/{self.stranger_probes} | {self.k}-of-n "
                f"FNIR {100 * self.approach_fnir:5.2f}% of {self.approaches}, strangers "
                f"granted {self.stranger_approaches_granted}/{self.stranger_approaches}")


def _gallery(by_label: dict[int, list[Sample]], enrolled: list[int], rule: str
             ) -> tuple[npt.NDArray[np.float32], list[int]]:
    rows: list[npt.NDArray[np.float32]] = []
    owners: list[int] = []
    for lab in enrolled:
        temps = [s.embedding for s in by_label[lab][:ENROL_MAX]
                 if _usable(s, enrol=True) is Reason.OK and s.embedding is not None]
        if rule == "1 photo":
            temps = temps[:1] if _usable(by_label[lab][0], enrol=True) is Reason.OK else []
        elif rule.endswith("mean") and temps:
            temps = [fuse_rows(np.stack(temps))]
        rows.extend(temps)
        owners.extend([lab] * len(temps))
    g = np.stack(rows).astype(np.float32) if rows else np.zeros((0, 1), np.float32)
    return g, owners


def _granted(s: Sample, g: npt.NDArray[np.float32], owners: list[int], t: float) -> int:
    """Granted owner or -1 (-2: refused by the gate). Probes fused (mirror always)."""
    if _usable(s, enrol=False) is not Reason.OK or not owners:
        return -2
    assert s.embedding is not None
    scores = g @ s.embedding
    j = int(np.argmax(scores))
    return owners[j] if float(scores[j]) >= t else -1


def _approach(votes: list[int], k: int) -> int:
    """The subject at least ``k`` of an approach's frames were granted to, else -1."""
    counts: dict[int, int] = {}
    for v in votes:
        if v >= 0:
            counts[v] = counts.get(v, 0) + 1
    best = max(counts.items(), key=lambda kv: kv[1], default=(-1, 0))
    return best[0] if best[1] >= k else -1


def run_study(samples: list[Sample], table: CalibrationTable, target_fmr: float,
              *, k: int = 2, fmrs: tuple[float, ...] = SWEEP_FMRS) -> list[StudyRow]:
    """Every template rule x threshold (the device's first) on ``samples`` (file order)."""
    by_label: dict[int, list[Sample]] = {}
    for s in samples:
        by_label.setdefault(s.label, []).append(s)
    labels = sorted(by_label)
    strangers = [lab for i, lab in enumerate(labels) if i % 3 == 2]
    members = [lab for i, lab in enumerate(labels)
               if i % 3 != 2 and len(by_label[lab]) > ENROL_MAX]
    out: list[StudyRow] = []
    for rule in TEMPLATE_RULES:
        g, owners = _gallery(by_label, members, rule)
        subjects = len(set(owners))
        enrolled = sorted(set(owners))
        for fmr in (target_fmr / max(1, subjects), *fmrs):
            t = round(table.threshold_at(fmr), 4)
            mated = {lab: [_granted(s, g, owners, t) for s in by_label[lab][ENROL_MAX:]]
                     for lab in enrolled}
            strange = {lab: [_granted(s, g, owners, t) for s in by_label[lab]]
                       for lab in strangers}
            m_all = [v == lab for lab, vs in mated.items() for v in vs]
            s_all = [v >= 0 for vs in strange.values() for v in vs]
            m_app = [_approach(vs, k) == lab for lab, vs in mated.items() if len(vs) >= k]
            s_app = [_approach(vs, k) >= 0 for vs in strange.values() if len(vs) >= k]
            out.append(StudyRow(
                rule=rule, per_comparison_fmr=fmr, threshold=t, subjects=subjects,
                templates=len(owners), mated_probes=len(m_all),
                mated_not_granted=m_all.count(False), stranger_probes=len(s_all),
                strangers_granted=sum(s_all), k=k, approaches=len(m_app),
                approaches_not_granted=m_app.count(False), stranger_approaches=len(s_app),
                stranger_approaches_granted=sum(s_app),
            ))
    return out
