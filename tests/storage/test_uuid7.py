from __future__ import annotations

import itertools
import time
import uuid

from facegate.storage.uuid7 import uuid7, uuid7_str, uuid7_time_ms


def test_ids_are_v7_strictly_increasing_and_carry_time() -> None:
    before = time.time_ns() // 1_000_000
    ids = [uuid7() for _ in range(20_000)]
    assert all(u.version == 7 and u.variant == uuid.RFC_4122 for u in ids)
    assert all(a < b for a, b in itertools.pairwise(ids))
    strs = [str(u) for u in ids]
    assert strs == sorted(strs)
    assert before <= uuid7_time_ms(ids[0]) <= time.time_ns() // 1_000_000 + 5


def test_clock_step_back_keeps_order() -> None:
    now = time.time_ns() // 1_000_000
    a = uuid7(now_ms=now + 50)  # small step so later ids in this process stay near real time
    b = uuid7(now_ms=now - 1_000)
    assert b > a
    assert len(uuid7_str()) == 36
