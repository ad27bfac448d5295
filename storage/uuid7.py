"""UUIDv7 (RFC 9562): 48-bit Unix milliseconds, then randomness.

Ids from one process are strictly increasing, even within one millisecond:
the 12-bit ``rand_a`` field is used as a counter seeded randomly per
millisecond (RFC 9562 section 6.2, method 1). If the wall clock steps back,
the previous timestamp is kept so order still holds.
"""

from __future__ import annotations

import os
import threading
import time
import uuid

_lock = threading.Lock()
_last_ms = 0
_counter = 0


def uuid7(now_ms: int | None = None) -> uuid.UUID:
    """A new, time-ordered UUIDv7. ``now_ms`` overrides the clock (tests)."""
    global _last_ms, _counter  # noqa: PLW0603  # process-wide monotonic state is the point
    ms = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    with _lock:
        if ms > _last_ms:
            _last_ms = ms
            _counter = int.from_bytes(os.urandom(2), "big") & 0x3FF  # leave headroom
        else:
            _counter += 1
            if _counter > 0xFFF:  # counter exhausted: borrow the next millisecond
                _last_ms += 1
                _counter = 0
        ms, counter = _last_ms, _counter
    rand_b = int.from_bytes(os.urandom(8), "big") & ((1 << 62) - 1)
    value = (ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | counter << 64 | 0b10 << 62 | rand_b
    return uuid.UUID(int=value)


def uuid7_str() -> str:
    """``str(uuid7())``; lexicographic order equals time order."""
    return str(uuid7())


def uuid7_time_ms(value: uuid.UUID | str) -> int:
    """The Unix millisecond timestamp embedded in a UUIDv7."""
    u = value if isinstance(value, uuid.UUID) else uuid.UUID(value)
    return u.int >> 80
