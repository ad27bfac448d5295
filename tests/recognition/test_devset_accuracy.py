"""Opt-in accuracy check on ../shared/faces/devset (1,056 identities, 5,232 images).

CI runs it on every 4th identity (264 identities, 1,278 images) so it stays well
inside its timeout on the shared 2-core machine. Measured cost of calibrate's
device path (detect, refine, gate, four recogniser rows): 0.128 s of CPU per
image (AMD EPYC, from `--every 20` vs `--every 4` runs: 27.7 s vs 164.4 s CPU for
208 vs 1,278 images). Estimate on an idle 2-core machine (wall <= CPU time):
~170 s for `--every 4` (14% of the 1,200 s timeout); `--every 2` would be ~340 s
idle but took ~24 min at today's load average of 13 (one `--every 4` run: 722 s
wall), past the timeout, and the full set ~680 s idle.

The devset is research data that must never be copied into the project, so a
fresh clone does not have it: this test then skips and says so. CI has the
folder beside the clone, so there it guards against accuracy regressions of
the shipped model, alignment and detection path (reference measurement of
YuNet + SFace: FNMR 2.70% / 4.71% / 7.79% at FMR 1e-2 / 1e-3 / 1e-4, EER 2.17%).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from facegate.handlers.recognition.engine import int8_build

DEVSET = Path(__file__).resolve().parents[2].parent / "shared" / "faces" / "devset"


@pytest.mark.devset
@pytest.mark.timeout(1200)
@pytest.mark.skipif(
    not DEVSET.is_dir(),
    reason=f"opt-in accuracy check: {DEVSET} is absent (only CI and developer machines have the devset)",
)
def test_calibrate_on_devset_meets_the_reference(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "facegate.runtime.app.cli", "calibrate", str(DEVSET),
         "--every", "4", "--json", "--open-set", "-o", str(tmp_path / "table.json")],
        capture_output=True, text=True, timeout=1180, check=True,
    )
    summary = json.loads(out.stdout)
    print(json.dumps(summary, indent=2))  # the figures land in the CI log
    assert summary["identities"] >= 250  # every 4th of 1,056
    # No worse than the published reference for this model pair (measured on every 4th
    # identity: device configuration multi+flip@gate, fp32: EER 0.58%, FNMR 1.33% at 1e-3 and
    # 3.64% at 1e-4; refine+flip@gate, int8: EER 0.67%, 1.71%, 4.35%).
    assert summary["eer"] <= 0.0217
    assert summary["fnmr@0.001"] <= 0.0471
    assert summary["fnmr@0.0001"] <= 0.0779
    assert (tmp_path / "table.json").is_file()
    # Issue 15: the device path (selection, refinement, gate, fusion) beats the legacy path
    # at FMR 1e-4, and the open-set run at the device threshold grants no stranger (measured
    # on every 4th identity: fp32 3.64% vs 4.98%, int8 4.35% vs 5.13%; 0 of 345 granted).
    # Two detection scales are the default with fp32, not with int8 (fusion.multiscale).
    rows = {r["config"]: r for r in summary["configurations"]}
    int8 = int8_build(summary["model_id"])
    device, other = ("refine+flip@gate", "multi+flip@gate") if int8 else (
        "multi+flip@gate", "refine+flip@gate")
    assert summary["device_config"] == device
    assert rows["refine+flip"]["fnmr@0.0001"] < rows["legacy"]["fnmr@0.0001"]
    assert rows[device]["fnmr@0.0001"] < rows["legacy"]["fnmr@0.0001"]
    assert rows["refine+flip"]["fte_rate"] <= 0.01
    o = summary["open_set"]
    assert o["strangers_granted"] == 0
    # Enrolment accepts a wider yaw than the gate (measured: 0 of 176 at 85 deg; 2 at 65).
    assert o["fte_rate"] <= 0.01
    # The gate spends the mirror view on the uncertain probes only (measured 128 of 1,076).
    assert o["probes_mirrored"] <= 0.3 * o["probes_searched"]
    # Round 3: the other fused configuration is measured next to the device, and the study's
    # device row (one photo per subject) grants no stranger.
    assert rows[other]["fnmr@0.0001"] < rows["legacy"]["fnmr@0.0001"]
    assert other in summary["other_open_sets"]
    device_rows = [r for r in summary["open_set_study"]
                   if r["config"] == device and r["rule"] == "1 photo"]
    assert device_rows[0]["strangers_granted"] == 0 and device_rows[0]["mated_probes"] > 300
