"""Capped, jittered exponential backoff shared by every reconnect loop."""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass
class Backoff:
    """Full-jitter exponential backoff: delay n is uniform in [base, min(cap, base * 2**n)].

    ``reset()`` after a success. Jitter spreads a fleet's reconnects so that a
    broker restart is not met by every device in the same millisecond.
    """

    base: float = 0.5
    cap: float = 30.0
    rng: random.Random = field(default_factory=random.Random)
    attempt: int = 0

    def next_delay(self) -> float:
        """Return the delay before the next attempt and count the attempt."""
        ceiling = min(self.cap, self.base * (2 ** min(self.attempt, 30)))
        self.attempt += 1
        return self.rng.uniform(self.base if ceiling > self.base else 0.0, ceiling)

    def reset(self) -> None:
        """Forget past failures (call after a successful connect or a healthy run)."""
        self.attempt = 0
