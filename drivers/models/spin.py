"""Adaptive spinning: pick, per inference, whether the recogniser's threads busy-wait.

Spinning worker threads (``allow_spinning=1``, stopped after each run) save the
wake-up latency of every parallel operator: the int8 SFace embedding drops from
~4.5 to ~3.3 ms when the cores are free. When other work wants the cores, the
same spinning makes it slower (the spinner holds a core another thread needs).
A gate device is idle most of the time and busy in bursts, so neither fixed
setting is right. :class:`AdaptiveSpin` keeps one session of each kind for the
same model and routes each run to the one whose recent latency (the median of
its last ``window`` runs; a median, so that one slow outlier such as the first,
allocating run does not bias the choice for long) is lower, re-measuring the
other one every ``explore_every`` runs so that it notices when conditions
change. Both sessions compute the same function; only the scheduling differs.
"""

from __future__ import annotations

import collections
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import onnxruntime as ort


class AdaptiveSpin:
    """Duck-types the ``run``/``get_inputs``/``get_outputs`` part of an InferenceSession.

    Thread-safe: onnxruntime sessions may run concurrently; the statistics are
    guarded by a lock. ``timer`` is injectable for tests.
    """

    QUIET = 0
    SPIN = 1

    def __init__(
        self,
        quiet: ort.InferenceSession,
        spinning: ort.InferenceSession,
        *,
        explore_every: int = 16,
        window: int = 5,
        timer: Callable[[], float] = time.perf_counter,
    ) -> None:
        if explore_every < 2:
            raise ValueError("explore_every must be >= 2")
        if window < 1:
            raise ValueError("window must be >= 1")
        self._sessions = (quiet, spinning)
        self._explore_every = explore_every
        self._timer = timer
        self._lock = threading.Lock()
        self._recent: tuple[collections.deque[float], collections.deque[float]] = (
            collections.deque(maxlen=window),
            collections.deque(maxlen=window),
        )
        self._runs = 0
        self.counts = [0, 0]
        """Runs per mode (quiet, spin), for telemetry and tests."""

    def get_inputs(self) -> Any:
        return self._sessions[0].get_inputs()

    def get_outputs(self) -> Any:
        return self._sessions[0].get_outputs()

    @property
    def preferred(self) -> int:
        """The mode the next non-exploring run uses (QUIET or SPIN)."""
        with self._lock:
            return self._best()

    def _best(self) -> int:
        quiet, spin = self._recent
        if not quiet:
            return self.QUIET
        if not spin:
            return self.SPIN
        return self.SPIN if statistics.median(spin) < statistics.median(quiet) else self.QUIET

    def run(self, output_names: Sequence[str] | None, feeds: dict[str, Any]) -> list[Any]:
        """Run on the session whose recent latency is lower (sometimes on the other one)."""
        with self._lock:
            self._runs += 1
            mode = self._best()
            if self._runs % self._explore_every == 0 and all(self._recent):
                mode = 1 - mode
        start = self._timer()
        out = self._sessions[mode].run(output_names, feeds)
        took = self._timer() - start
        with self._lock:
            self._recent[mode].append(took)
            self.counts[mode] += 1
        return list(out)
