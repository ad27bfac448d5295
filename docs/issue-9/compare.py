"""Compare normalised demo captures: ``python compare.py BEFORE AFTER [BEFORE_RUN2]``.

Telemetry ticks (their number follows wall time) and 1-frame ``track_lost``
decisions (spurious tracks at scene changes, which vary from run to run of the
same code) are left out of the ordered comparison; telemetry shapes are
compared as sets.
"""

from __future__ import annotations

import collections
import sys
from pathlib import Path


def load(path: str) -> list[str]:
    return Path(path).read_text(encoding="utf-8").splitlines()


def events(lines: list[str]) -> list[str]:
    return [x for x in lines if '"reason": "track_lost"' not in x and "/telemetry " not in x]


def telemetry(lines: list[str]) -> set[str]:
    return {x for x in lines if "/telemetry " in x}


def main(argv: list[str]) -> None:
    before, after = load(argv[1]), load(argv[2])
    print("events identical and in the same order:", events(before) == events(after))
    same = collections.Counter(events(before)) == collections.Counter(events(after))
    print("same multiset of events:", same)
    print("telemetry shapes equal:", telemetry(before) == telemetry(after))
    if len(argv) > 3:
        run2 = load(argv[3])
        print("(original code, run 1 vs run 2) events identical:", events(before) == events(run2))
        print("every line shape after was seen in an original run:", set(after) <= set(before) | set(run2))


if __name__ == "__main__":
    main(sys.argv)
