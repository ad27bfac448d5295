"""``facegate calibrate DIR``: score distributions and a calibration table."""

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
        description="Embed every DIR/<person>/<image>, compare all pairs, print FNMR at "
        "FMR 1e-2/1e-3/1e-4 and the EER, and write a calibration table for "
        "recognition.calibration.",
    )
    p.add_argument("dir", type=Path, help="folder of person sub-folders of images")
    p.add_argument("-o", "--output", type=Path, default=Path("calibration.json"),
                   help="calibration table to write (default: calibration.json)")
    p.add_argument("-c", "--config", type=Path, default=None,
                   help="device config (model selection and cache); default built-in models")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(handler=_calibrate)


def _calibrate(args: argparse.Namespace) -> int:
    from ....drivers.models.loader import ModelOptions, load_models  # noqa: PLC0415 - heavy imports only when the command runs
    from ....handlers.recognition.calibration import (  # noqa: PLC0415 - heavy imports only when the command runs
        REPORT_FMRS,
        build_table,
        embed_folder,
        pair_scores,
    )
    from ....handlers.recognition.engine import model_options  # noqa: PLC0415 - heavy imports only when the command runs

    # stdout carries only the report (or the JSON object): logs go to stderr.
    configure_logging(device_id="cli", level="warning", stream=sys.stderr)
    root: Path = args.dir
    if not root.is_dir():
        print(f"facegate calibrate: {root} is not a folder", file=sys.stderr)
        return 2
    if args.config is not None:
        loaded = load_config(args.config)
        opts = model_options(loaded.config.recognition, loaded.path)
    else:
        opts = ModelOptions()
    models = load_models(opts)

    def progress(done: int, total: int) -> None:
        print(f"  embedded {done}/{total}", file=sys.stderr, flush=True)

    data = embed_folder(models, root, progress=progress)
    if data.embeddings.shape[0] < 2 or data.identities < 2:
        print("facegate calibrate: need at least two identities with faces", file=sys.stderr)
        return 1
    stats = pair_scores(data)
    if stats.genuine.size == 0:
        print("facegate calibrate: no person has two usable images", file=sys.stderr)
        return 1
    try:
        table = build_table(stats, models.model_id, data)
    except ValueError as exc:
        print(f"facegate calibrate: {exc}", file=sys.stderr)
        return 1
    args.output.write_text(json.dumps(table.to_json(), indent=2) + "\n", "utf-8")
    s = table.summary
    if args.json:
        print(json.dumps({"model_id": models.model_id, **s}))
        return 0
    print(f"model {models.model_id}: {data.identities} identities, {data.images} images "
          f"({data.failed} without a usable face)")
    print(f"genuine pairs {stats.genuine.size}, impostor pairs {stats.impostor_sorted.size}")
    for f in REPORT_FMRS:
        print(f"  FMR {f:g}: threshold {s[f'threshold@{f:g}']:.4f}  "
              f"FNMR {100 * s[f'fnmr@{f:g}']:.2f}%")
    print(f"  EER {100 * s['eer']:.2f}% at threshold {s['eer_threshold']:.4f}")
    print(f"calibration table written to {args.output}")
    return 0
