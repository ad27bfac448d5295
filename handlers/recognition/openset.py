"""Open-set 1:N benchmark on a labelled folder, at the device's own threshold.

Protocol (``facegate calibrate --open-set``): identities sorted by name, every
third one (index 2, 5, 8, ...) is held out as a **stranger**. Every other
identity enrols its **first** image (enrolment selection rule + quality
gate, as ``embed_image``); an identity whose first image is refused is a
failure to enrol and takes no further part. Every remaining image of an
enrolled identity is a **mated probe**; every image of a stranger is a
**non-mated probe**. A probe goes through the gate's selection rule and
quality gate; a probe that passes is searched against the gallery and
granted when its best score reaches the device threshold
(``ThresholdPolicy``: ``target_fmr / gallery size`` looked up in the
calibration table). Enrolment uses the enrolment quality limits (wider yaw)
and the fused template. With ``opts`` (mirror fusion on), a probe is searched
with its plain view first and re-searched fused only when
:func:`~.fusion.needs_mirror` says so, as the gate does; ``probes_mirrored``
counts those.

Reported: FNIR per mated probe image (not granted as its own identity,
including gate refusals; also without them), mated probes granted as
someone else, and strangers granted (the number that must be 0).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .evaluation import Sample
from .fusion import EmbedOptions, needs_mirror
from .reasons import Reason
from .thresholds import ThresholdPolicy


@dataclass(frozen=True, slots=True)
class OpenSetResult:
    """Counts of the open-set run (no embeddings, no names)."""

    enrolled: int
    failed_to_enrol: int
    fte_reasons: dict[str, int]
    mated_probes: int
    mated_refused: int
    mated_missed: int
    """Passed the gate, best score below the threshold."""
    mated_wrong: int
    """Granted, but as another identity."""
    stranger_probes: int
    stranger_refused: int
    strangers_granted: int
    threshold: float
    probes_searched: int = 0
    probes_mirrored: int = 0
    """Searched probes whose plain view was uncertain (mirror view embedded)."""

    @property
    def fnir(self) -> float:
        """Mated probes not granted as their own identity, gate refusals included."""
        bad = self.mated_refused + self.mated_missed + self.mated_wrong
        return bad / self.mated_probes if self.mated_probes else 0.0

    @property
    def fnir_passed(self) -> float:
        """The same over the mated probes that passed the gate."""
        n = self.mated_probes - self.mated_refused
        return (self.mated_missed + self.mated_wrong) / n if n else 0.0

    @property
    def fte_rate(self) -> float:
        n = self.enrolled + self.failed_to_enrol
        return self.failed_to_enrol / n if n else 0.0


def _usable(s: Sample, *, enrol: bool) -> Reason:
    reason = s.enrol_selected if enrol else s.selected
    if reason is not Reason.OK:
        return reason
    gate = s.enrol_gate if enrol else s.gate
    if gate is not Reason.OK or s.embedding is None:
        return gate if gate is not Reason.OK else Reason.NO_FACE
    return Reason.OK


def _probe(s: Sample, g: np.ndarray, owners: list[int], *, threshold: float,
           opts: EmbedOptions | None, counts: list[int]) -> int:
    """Granted label or -1 for a probe that passed the gate (the gate's mirror rule)."""
    assert s.embedding is not None
    scores = g @ s.embedding
    if opts is not None and s.plain is not None:
        plain = g @ s.plain
        top = np.sort(plain)[::-1]
        second = float(top[1]) if top.size > 1 else None
        counts[0] += 1
        if needs_mirror(float(top[0]), second, threshold, opts):
            counts[1] += 1
        else:
            scores = plain
    j = int(np.argmax(scores))
    return owners[j] if float(scores[j]) >= threshold else -1


def run_open_set(
    samples: list[Sample], policy: ThresholdPolicy, opts: EmbedOptions | None = None
) -> OpenSetResult:
    """Run the protocol above on ``samples`` (file order: identity, then image)."""
    by_label: dict[int, list[Sample]] = {}
    for s in samples:
        by_label.setdefault(s.label, []).append(s)
    labels = sorted(by_label)  # labels follow the sorted identity names
    strangers = {lab for i, lab in enumerate(labels) if i % 3 == 2}
    gallery: list[np.ndarray] = []
    owners: list[int] = []
    fte: dict[str, int] = {}
    mated: list[Sample] = []
    for lab in labels:
        if lab in strangers:
            continue
        first, *rest = by_label[lab]
        why = _usable(first, enrol=True)
        if why is not Reason.OK:
            fte[str(why)] = fte.get(str(why), 0) + 1
            continue
        assert first.embedding is not None
        gallery.append(first.embedding)
        owners.append(lab)
        mated.extend(rest)
    threshold = policy.threshold(len(gallery))
    g = np.stack(gallery) if gallery else np.zeros((0, 1), np.float32)
    counts = [0, 0]  # probes searched with the plain view first, of them mirrored

    def search(s: Sample) -> tuple[bool, int]:
        """(passed gate, granted label or -1)."""
        if _usable(s, enrol=False) is not Reason.OK or not owners:
            return False, -1
        return True, _probe(s, g, owners, threshold=threshold, opts=opts, counts=counts)

    m_ref = m_miss = m_wrong = 0
    for s in mated:
        passed, who = search(s)
        if not passed:
            m_ref += 1
        elif who == -1:
            m_miss += 1
        elif who != s.label:
            m_wrong += 1
    probes = [s for lab in labels if lab in strangers for s in by_label[lab]]
    s_ref = s_grant = 0
    for s in probes:
        passed, who = search(s)
        s_ref += int(not passed)
        s_grant += int(who != -1)
    return OpenSetResult(
        enrolled=len(owners), failed_to_enrol=sum(fte.values()), fte_reasons=fte,
        mated_probes=len(mated), mated_refused=m_ref, mated_missed=m_miss, mated_wrong=m_wrong,
        stranger_probes=len(probes), stranger_refused=s_ref, strangers_granted=s_grant,
        threshold=threshold, probes_searched=counts[0], probes_mirrored=counts[1],
    )
