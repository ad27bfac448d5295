"""Normalise a ``mosquitto_sub -v -F '%t %r %p'`` capture: ids, times and measurements replaced.

Usage: ``python normalise.py CAPTURE > NORMALISED``. What is kept: the topic,
every payload key and every value that does not depend on time, randomness or
CPU speed (decisions, reasons, subject ids, kinds, counts, model id, ...). The
retain flag is dropped (whether a subscriber sees the birth message retained
depends on when it connected). Telemetry keeps its keys and the names of the
tasks, queues and sources it reports.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

VOLATILE = {
    "at", "event_id", "receipt_id", "connected_at", "started_at", "uptime_s", "latency_ms",
    "seq", "bus_published", "fps", "decision_ms", "time", "template_ids", "export_id",
}
IDS = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|[0-9a-f]{32}")


def norm(v: Any, key: str = "") -> Any:
    if key in VOLATILE:
        return "<v>"
    if isinstance(v, dict):
        return {k: norm(x, k) for k, x in v.items()}
    if isinstance(v, list):
        return [norm(x) for x in v]
    if isinstance(v, str):
        return IDS.sub("<uuid>", v)
    if isinstance(v, float):
        return "<float>"
    return v


def main(path: str) -> None:
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        topic, _retain, payload = line.split(" ", 2)
        try:
            body = json.loads(payload)
        except ValueError:
            print(topic, payload)
            continue
        if topic.endswith("/telemetry"):
            body = {k: (sorted(v) if isinstance(v, dict) else "<v>") for k, v in body.items()}
        print(topic, json.dumps(norm(body), sort_keys=True))


if __name__ == "__main__":
    main(sys.argv[1])
