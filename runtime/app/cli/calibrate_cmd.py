"""``facegate calibrate DIR``: the device path measured on a labelled folder, and its table."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ...config import load_config
from ...logs import configure_logging


def register(sub: Any) -> None:
    """Add the ``calibrate`` command."""
    p = sub.add_parser(
        "calibrate",
        help="measure the recogniser on a labelled folder (DIR/person/*.jpg)",
        description="Run every DIR/<person>/<image> through the device's own path (face "
        "selection, landmark refinement, quality gate, view fusion), compare all pairs, print "
        "FNMR at FMR 1e-2/1e-3/1e-4, the EER, failures to enrol and gate refusals, and write "
        "the calibration table of the device configuration for recognition.calibration.",
    )
    p.add_argument("dir", type=Path, help="folder of person sub-folders of images")
    p.add_argument("-o", "--output", type=Path, default=Path("calibration.json"),
                   help="calibration table to write (default: calibration.json)")
    p.add_argument("-c", "--config", type=Path, default=None,
                   help="device config (models, ROI, quality, fusion); default built-in")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--compare", action="store_true",
                   help="also measure the other recogniser precision (fp32/int8) and the plain "
                   "model run the reference way (OpenCV YuNet 640 px letterbox + SFace fp32)")
    p.add_argument("--reference", action="store_true",
                   help="also measure the plain model run the reference way (part of --compare)")
    p.add_argument("--open-set", action="store_true",
                   help="also run the open-set 1:N benchmark (first image enrolled, the rest "
                   "probed, a third of the identities held out as strangers)")
    p.add_argument("--every", type=int, default=1, metavar="N",
                   help="use every N-th identity only (quick runs; default 1 = all)")
    p.set_defaults(handler=_calibrate)


def _calibrate(args: argparse.Namespace) -> int:
    from ....drivers.models.loader import ModelOptions  # noqa: PLC0415 - heavy imports only when the command runs
    from ....handlers.recognition.calibrate_run import CalibrationError, run_calibration  # noqa: PLC0415 - heavy imports only when the command runs
    from ...config.recognition import RecognitionSection  # noqa: PLC0415 - heavy imports only when the command runs

    # stdout carries only the report (or the JSON object): logs go to stderr.
    configure_logging(device_id="cli", level="warning", stream=sys.stderr)
    root: Path = args.dir
    if not root.is_dir():
        print(f"facegate calibrate: {root} is not a folder", file=sys.stderr)
        return 2
    if args.every < 1:
        print("facegate calibrate: --every must be >= 1", file=sys.stderr)
        return 2
    cfg = RecognitionSection()
    config_path = None
    if args.config is not None:
        loaded = load_config(args.config)
        cfg, config_path = loaded.config.recognition, loaded.path

    def progress(done: int, total: int) -> None:
        print(f"  analysed {done}/{total}", file=sys.stderr, flush=True)

    try:
        report = run_calibration(
            cfg, root, config_path=config_path, compare=args.compare, open_set=args.open_set,
            reference=args.reference or args.compare,
            every=args.every, progress=progress, base_options=ModelOptions(),
        )
    except CalibrationError as exc:
        print(f"facegate calibrate: {exc}", file=sys.stderr)
        return 1
    args.output.write_text(json.dumps(report.table.to_json(), indent=2) + "\n", "utf-8")
    if args.json:
        print(json.dumps(report.to_json()))
        return 0
    for line in report.lines():
        print(line)
    print(f"calibration table ({report.table.model_id}, {report.device_config}) "
          f"written to {args.output}")
    return 0
