"""What ``facegate calibrate`` runs: configurations, precisions, reference, open set.

The table written is the one of the **device configuration** (the
``[recognition]`` settings given, by default the built-in ones: selection
rule, refinement, flip fusion, quality gate) over the images the gate
accepts, so the threshold it yields describes what the device compares.
Every row of the report also says how many images failed to enrol (no face
selected) and how many the gate refused, and how many of those refusals
would have matched (their genuine comparisons mostly reach the FMR 1e-4
threshold of the ungated set).

With mirror fusion on and ``fusion.flip_band`` < 1 the device configuration
is ``refine+flip@gate`` (or ``coarse+flip@gate``): templates fused, probes
fused only when uncertain (:func:`~.evaluation.gate_flip_stats` around the
fused configuration's FMR 1e-4 threshold; the open set with the exact gate
rule, runner-up margin included), and the table is built from those scores.
Enrolment in the open set uses ``fusion.enrol_max_yaw_deg``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...drivers.models.loader import LoadedModels, ModelOptions, load_models
from ...runtime.config.recognition import RecognitionSection
from .calibration import REPORT_FMRS, ScoreStats, build_table
from .engine import embed_options, int8_build, model_options, quality_limits, selection_rule
from .evaluation import CONFIGS, Sample, collect, embedded_set, gate_flip_stats, gate_report, stats_of
from .fusion import multiscale_default
from .openset import OpenSetResult, run_open_set
from .openset_study import StudyRow, run_study
from .pipeline import enrol_limits
from .reference import collect_reference
from .selection import ENROL_RULE
from .thresholds import CalibrationError, CalibrationTable, ThresholdPolicy

__all__ = ["CalibrationError", "CalibrationReport", "run_calibration"]

MULTI = "multi+flip"
"""Two detection scales fused (issue 15 round 3): always reported next to the device."""


def device_config_name(cfg: RecognitionSection, *, int8: bool) -> str:
    """The :data:`~.evaluation.CONFIGS` entry the device settings correspond to."""
    name = "refine" if cfg.fusion.refine else "coarse"
    if not cfg.fusion.flip:
        return name
    if multiscale_default(cfg.fusion.multiscale, int8=int8) and cfg.fusion.refine:
        name = MULTI.removesuffix("+flip")
    return name + ("+flip@gate" if cfg.fusion.flip_band < 1.0 else "+flip")


@dataclass
class CalibrationReport:
    """Rows of figures (no embeddings) and the device configuration's table."""

    table: CalibrationTable
    device_config: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    open_set: OpenSetResult | None = None
    other_open_sets: dict[str, OpenSetResult] = field(default_factory=dict)
    """Open set of the other fused configuration (multi+flip@gate) with its own table."""
    study: list[tuple[str, StudyRow]] = field(default_factory=list)
    """Templates per subject x threshold x k-of-n (``openset_study.py``)."""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"model_id": self.table.model_id, **self.table.summary,
                               "device_config": self.device_config, "configurations": self.rows}
        if self.open_set is not None:
            o = self.open_set
            out["open_set"] = {**dataclasses.asdict(o), "fnir": round(o.fnir, 5),
                               "fnir_passed_gate": round(o.fnir_passed, 5),
                               "fte_rate": round(o.fte_rate, 5)}
        for name, o in self.other_open_sets.items():
            out.setdefault("other_open_sets", {})[name] = {
                **dataclasses.asdict(o), "fnir": round(o.fnir, 5),
                "fnir_passed_gate": round(o.fnir_passed, 5), "fte_rate": round(o.fte_rate, 5)}
        if self.study:
            out["open_set_study"] = [{"config": c, **dataclasses.asdict(r),
                                      "fnir": round(r.fnir, 5),
                                      "approach_fnir": round(r.approach_fnir, 5)}
                                     for c, r in self.study]
        return out

    def lines(self) -> list[str]:
        s = self.table.summary
        out = [f"model {self.table.model_id}: {int(s['identities'])} identities, "
               f"{int(s['images'])} images; device configuration {self.device_config}",
               "config         precision  FTE      gate refused (would match)  "
               "FNMR@1e-2 @1e-3  @1e-4   EER    | no gate: @1e-4  EER"]
        for r in self.rows:
            gate = (f"{r['gate_refused']:4d} {100 * r['gate_refused_rate']:5.2f}% "
                    f"({r['gate_would_match']:3d})" if "gate_refused" in r else " " * 20)
            out.append(
                f"{r['config']:<14} {r['precision']:<9} {100 * r['fte_rate']:5.2f}%  {gate:<27} "
                f"{100 * r['fnmr@0.01']:5.2f}%  {100 * r['fnmr@0.001']:5.2f}% "
                f"{100 * r['fnmr@0.0001']:5.2f}% {100 * r['eer']:5.2f}% | "
                f"{100 * r['nogate_fnmr@0.0001']:5.2f}% {100 * r['nogate_eer']:5.2f}%"
            )
        sets = [(self.device_config, self.open_set)] if self.open_set is not None else []
        for name, o in [*sets, *self.other_open_sets.items()]:
            out.append(
                f"open set ({name}, threshold {o.threshold:.4f} at gallery "
                f"{o.enrolled}): FTE {o.failed_to_enrol}/{o.enrolled + o.failed_to_enrol} "
                f"({100 * o.fte_rate:.2f}%) {o.fte_reasons}; FNIR {100 * o.fnir:.2f}% of "
                f"{o.mated_probes} mated probes ({100 * o.fnir_passed:.2f}% of those the gate "
                f"passed; refused {o.mated_refused}, below threshold {o.mated_missed}, "
                f"wrong subject {o.mated_wrong}); strangers granted {o.strangers_granted} of "
                f"{o.stranger_probes} ({o.stranger_refused} refused by the gate); mirror view "
                f"embedded for {o.probes_mirrored} of {o.probes_searched} searched probes"
            )
        if self.study:
            out.append("open-set study (identities with >= 3 images; probes fused; first row "
                       "of each rule: the device threshold):")
            out.extend(f"  {c:<18} {r.line()}" for c, r in self.study)
        return out


def _row(name: str, precision: str, samples: list[Sample], dim: int, identities: int,
         *, gated: bool) -> tuple[dict[str, Any], Any]:
    """Figures of one configuration; also the gated statistics for a table."""
    nogate = stats_of(embedded_set(samples, dim, gated=False, identities=identities))
    if nogate is None:
        raise CalibrationError("need at least two identities with two usable images each")
    fte = sum(1 for s in samples if s.selected.value != "ok")
    row: dict[str, Any] = {"config": name, "precision": precision, "images": len(samples),
                           "failed_to_enrol": fte, "fte_rate": round(fte / len(samples), 5)}
    stats = nogate
    data = embedded_set(samples, dim, gated=gated, identities=identities)
    if gated:
        t4 = nogate.threshold_at(1e-4)
        g = gate_report(samples, t4)
        row.update(gate_refused=g.refused, gate_refused_rate=round(g.refused / len(samples), 5),
                   gate_reasons=g.by_reason, gate_would_match=g.would_match,
                   gate_refused_with_mates=g.refused_with_mates)
        gs = stats_of(data)
        if gs is None:
            raise CalibrationError("the quality gate left too few images to compare")
        stats = gs
    row["genuine_pairs"] = int(stats.genuine.size)
    row["impostor_pairs"] = int(stats.impostor_sorted.size)
    for f in REPORT_FMRS:
        row[f"fnmr@{f:g}"] = round(stats.fnmr(stats.threshold_at(f)), 5)
        row[f"threshold@{f:g}"] = round(stats.threshold_at(f), 5)
    row["eer"] = round(stats.eer()[0], 5)
    row["nogate_fnmr@0.0001"] = round(nogate.fnmr(nogate.threshold_at(1e-4)), 5)
    row["nogate_eer"] = round(nogate.eer()[0], 5)
    return row, (stats, data)


def _gate_row(fused_row: dict[str, Any], fused: ScoreStats, samples: list[Sample],
              cfg: RecognitionSection, name: str) -> tuple[dict[str, Any], ScoreStats]:
    """The fused row re-scored under the gate's mirror rule (see module docstring)."""
    t = fused.threshold_at(1e-4)
    stats, share = gate_flip_stats(samples, threshold=t, band=cfg.fusion.flip_band)
    if stats is None:
        raise CalibrationError("the quality gate left too few images to compare")
    row = {k: v for k, v in fused_row.items() if not k.startswith(("fnmr@", "threshold@"))}
    row.update(config=name, genuine_pairs=int(stats.genuine.size),
               impostor_pairs=int(stats.impostor_sorted.size),
               mirror_threshold=round(t, 5), mirrored_pair_share=round(share, 5))
    for f in REPORT_FMRS:
        row[f"fnmr@{f:g}"] = round(stats.fnmr(stats.threshold_at(f)), 5)
        row[f"threshold@{f:g}"] = round(stats.threshold_at(f), 5)
    row["eer"] = round(stats.eer()[0], 5)
    return row, stats


def _study(report: CalibrationReport, sets: dict[str, tuple[CalibrationTable, list[Sample]]],
           cfg: RecognitionSection) -> None:
    """Open set of the other fused configuration, and the study of both (round 3)."""
    for name, (tab, samples) in sets.items():
        if name != report.device_config:
            policy = ThresholdPolicy(tab, cfg.target_fmr, fixed=cfg.threshold)
            report.other_open_sets[name] = run_open_set(
                samples, policy, embed_options(cfg, int8=int8_build(tab.model_id)))
        report.study.extend((name, r) for r in run_study(samples, tab, cfg.target_fmr,
                                                         k=min(cfg.decision.k, 2)))


def run_calibration(
    cfg: RecognitionSection, root: Path, *, config_path: Path | None = None,
    compare: bool = False, open_set: bool = False, reference: bool = False, every: int = 1,
    progress: Callable[[int, int], None] | None = None,
    base_options: ModelOptions | None = None,
) -> CalibrationReport:
    """Measure (see module docstring). Blocking: minutes for thousands of images."""
    opts = model_options(cfg, config_path) if base_options is None or config_path else base_options
    device_models = load_models(opts)  # "auto": the build pinned (or measured) on this device
    precisions = [device_prec := device_models.precision.precision]
    if compare and cfg.models.recognizer_path is None:
        precisions.append("fp32" if device_prec == "int8" else "int8")
    device_cfg = device_config_name(cfg, int8=device_prec == "int8")
    rule, limits = selection_rule(cfg), quality_limits(cfg)
    report: CalibrationReport | None = None
    rows: list[dict[str, Any]] = []
    first_models: LoadedModels | None = None
    multi: dict[str, tuple[CalibrationTable, list[Sample]]] = {}
    for prec in precisions:
        models = device_models if prec == device_prec else load_models(
            dataclasses.replace(opts, recognizer_precision=prec))
        first_models = first_models or models
        got = collect(models, root, rule=rule, enrol_rule=ENROL_RULE, limits=limits,
                      face_px=cfg.fusion.refine_face_px, every=every, progress=progress,
                      enrol_limits=enrol_limits(limits, cfg.fusion.enrol_max_yaw_deg))
        dim = models.embedder.dim
        base_cfg = device_cfg.removesuffix("@gate")
        alt = MULTI if base_cfg != MULTI else "refine+flip"  # the other fused configuration
        for name in CONFIGS:
            if prec != device_prec and name not in ("legacy", base_cfg, alt):
                continue
            row, (stats, data) = _row(name, prec, got.samples[name], dim, got.identities,
                                      gated=name != "legacy")
            row["model_id"] = models.model_id
            rows.append(row)
            gate_name = name + "@gate" if device_cfg.endswith("@gate") else name
            if name == alt and gate_name != name:
                row, stats = _gate_row(row, stats, got.samples[name], cfg, gate_name)
                rows.append(row)
            if name == alt and prec == device_prec and open_set:
                multi[gate_name] = (build_table(stats, models.model_id, data), got.samples[name])
            if name != base_cfg:
                continue
            if device_cfg != base_cfg:
                row, stats = _gate_row(row, stats, got.samples[name], cfg, device_cfg)
                rows.append(row)
            if prec == device_prec:
                table = build_table(stats, models.model_id, data)
                report = CalibrationReport(table=table, device_config=device_cfg)
                if open_set:
                    policy = ThresholdPolicy(table, cfg.target_fmr, fixed=cfg.threshold)
                    report.open_set = run_open_set(got.samples[name], policy,
                                                   embed_options(cfg, int8=prec == "int8"))
                    multi[device_cfg] = (table, got.samples[name])
    if (compare or reference) and first_models is not None:
        ref = collect_reference(first_models, root, every=every, progress=progress)
        ident = len({s.label for s in ref})
        row, _ = _row("reference", "fp32", ref, first_models.embedder.dim, ident, gated=False)
        row["model_id"] = "opencv-yunet640+sface-fp32"
        rows.append(row)
    assert report is not None  # the device precision and configuration always run
    _study(report, multi, cfg)
    report.rows = rows
    return report
