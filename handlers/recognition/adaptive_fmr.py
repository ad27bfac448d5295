"""What the adaptive decision rule costs in false matches, measured on a labelled folder.

Opt-in, reads the folder in place (nothing is copied)::

    python -m facegate.handlers.recognition.adaptive_fmr ../shared/faces/devset [--every 2]

Identities are split: every other identity is *enrolled* (its first image is
its template), the rest are *impostors*. Each identity's further images play
the frames of one approach to the gate (distinct photos: far less correlated
than video frames, so this leans towards independence and over-states how much
a third frame helps). For every run of 3 consecutive probe images:

- the **fixed** rule grants when all 3 vote for the same subject with score >=
  the gate threshold for the gallery size;
- the **adaptive** rule also grants when the first ``fast_k`` = 2 vote for the
  same subject with score >= ``fast_score`` and margin >= ``fast_margin``.

It prints the open-set false-positive identification rate (impostor runs
granted) of each rule, the genuine runs granted and how many of them took the
fast path, and the per-frame rates behind them.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ...drivers.models.loader import ModelOptions, load_models
from ...runtime.config.recognition import DecisionSettings, RecognitionSection
from ...runtime.logs import configure_logging
from .calibration import EmbeddedSet, embed_for_calibration, list_images, pair_scores
from .engine import threshold_policy
from .errors import ImageRejected
from .image import decode_image

Vote = tuple[int, float, float]  # (subject, score, margin)


def _votes(gallery: npt.NDArray[np.float32], probes: npt.NDArray[np.float32]) -> list[Vote]:
    s = probes @ gallery.T
    order = np.argsort(-s, axis=1)[:, :2]
    out = []
    for i, (a, b) in enumerate(order):
        out.append((int(a), float(s[i, a]), float(s[i, a] - s[i, b])))
    return out


def measure(root: Path, *, every: int, settings: DecisionSettings,
            precision: str | None = None) -> dict[str, Any]:
    """``precision``: the recogniser build (``None``: the device default for this CPU)."""
    models = load_models(ModelOptions(recognizer_precision=precision))
    by_person: dict[str, list[npt.NDArray[np.float32]]] = defaultdict(list)
    people = sorted({p for p, _ in list_images(root)})[::every]
    keep = set(people)
    for person, path in list_images(root):
        if person not in keep:
            continue
        try:
            bgr = decode_image(path.read_bytes())
            emb = embed_for_calibration(models, bgr)
        except (ImageRejected, OSError):
            emb = None
        if emb is not None:
            by_person[person].append(emb)
    names = sorted(by_person)
    enrolled = [n for i, n in enumerate(names) if i % 2 == 0]
    impostors = [n for i, n in enumerate(names) if i % 2 == 1 and len(by_person[n]) >= 3]
    gallery = np.stack([by_person[n][0] for n in enrolled])
    thr = threshold_policy(RecognitionSection(), models.model_id).threshold(len(enrolled))
    fk, fs, fm = max(2, settings.fast_k), settings.fast_score, settings.fast_margin

    def runs(rows: list[npt.NDArray[np.float32]], own: int | None) -> list[tuple[bool, bool, bool]]:
        """(fixed rule grants, fast path grants, the granted subject is ``own``) per 3-run."""
        if len(rows) < 3:
            return []
        v = _votes(gallery, np.stack(rows))
        out = []
        for j in range(len(v) - 2):
            w = v[j : j + 3]
            fixed = len({x[0] for x in w}) == 1 and all(x[1] >= thr for x in w)
            fw = w[:fk]
            fast = len({x[0] for x in fw}) == 1 and all(x[1] >= fs and x[2] >= fm for x in fw)
            out.append((fixed, fast, own is not None and w[0][0] == own))
        return out

    imp = [r for n in impostors for r in runs(by_person[n], None)]
    gen = [r for i, n in enumerate(enrolled) for r in runs(by_person[n][1:], i)]
    imp_frames = _votes(gallery, np.stack([e for n in impostors for e in by_person[n]]))
    n_imp, n_gen = max(1, len(imp)), max(1, len(gen))
    labels = [i for i, n in enumerate(names) for _ in by_person[n]]
    pairs = pair_scores(EmbeddedSet(
        embeddings=np.stack([e for n in names for e in by_person[n]]),
        labels=np.asarray(labels, np.int64), identities=len(names), images=len(labels), failed=0))
    return {
        "model_id": models.model_id,
        "images_embedded": sum(len(v) for v in by_person.values()),
        "gallery": len(enrolled),
        "threshold": round(thr, 4),
        "fast": {"k": fk, "score": fs, "margin": fm},
        "impostor_runs": len(imp),
        "fpir_fixed": sum(f for f, _, _ in imp) / n_imp,
        "fpir_adaptive": sum(f or q for f, q, _ in imp) / n_imp,
        "impostor_frames": len(imp_frames),
        "impostor_frame_rate_at_threshold": float(np.mean([x[1] >= thr for x in imp_frames])),
        "impostor_frame_rate_fast": float(np.mean([x[1] >= fs and x[2] >= fm
                                                   for x in imp_frames])),
        "impostor_pairs": int(pairs.impostor_sorted.size),
        "pair_fmr_at_threshold": pairs.fmr(thr),
        "pair_fmr_at_fast_score": pairs.fmr(fs),
        "genuine_pair_rate_at_fast_score": float(np.mean(pairs.genuine >= fs)),
        "genuine_runs": len(gen),
        "genuine_granted_fixed": sum(f for f, _, _ in gen) / n_gen,
        "genuine_granted_adaptive": sum(f or q for f, q, _ in gen) / n_gen,
        "genuine_fast_path": sum(q for _, q, _ in gen) / n_gen,
        "genuine_fast_wrong_subject": sum(q and not r for _, q, r in gen) / n_gen,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("root", type=Path, help="DIR/<person>/*.jpg (read in place)")
    ap.add_argument("--every", type=int, default=1, help="use every n-th identity")
    ap.add_argument("--fast-score", type=float, default=DecisionSettings().fast_score)
    ap.add_argument("--fast-margin", type=float, default=DecisionSettings().fast_margin)
    ap.add_argument("--precision", choices=("int8", "fp32"), default=None,
                    help="recogniser build (default: the device default for this CPU)")
    args = ap.parse_args(argv)
    configure_logging(device_id="cli", level="warning", stream=sys.stderr)  # stdout: JSON
    if not args.root.is_dir():
        print(f"adaptive_fmr: {args.root}: not a directory", file=sys.stderr)
        return 2
    s = DecisionSettings(fast_k=2, fast_score=args.fast_score, fast_margin=args.fast_margin)
    print(json.dumps(measure(args.root, every=args.every, settings=s,
                              precision=args.precision), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
