"""In-memory GPIO lines for tests and the demo.

Tests drive inputs with :meth:`SimulatedGpio.drive_input` and inspect outputs
with :meth:`SimulatedGpio.level` and :attr:`SimulatedGpio.output_changes`,
which records every output change with the driver clock's monotonic time (so a
test can count relay actuations and measure pulse lengths).

With ``chip_file`` the output levels are also written to a file that models
the chip and its kernel across processes (:mod:`.simchip`): another process
sees what the kernel would do with the lines after this one released them or
died (``release`` = ``revert`` or ``keep``).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ...runtime.clock import Clock
from .base import GpioClosedError, GpioDriver, Interlock, LineEdge
from .simchip import ChipFile, Release


@dataclass(frozen=True, slots=True)
class OutputChange:
    """One output level change recorded by the simulator."""

    line: int
    high: bool
    monotonic: float


class SimulatedGpio(GpioDriver):
    """A chip whose lines live in memory. Inputs start low unless ``initial_inputs`` says so."""

    def __init__(  # keyword-only wiring of a test double
        self,
        *,
        outputs: Mapping[int, bool],
        inputs: Sequence[int],
        clock: Clock,
        initial_inputs: Mapping[int, bool] | None = None,
        interlocks: Sequence[Interlock] = (),
        chip_file: Path | None = None,
        release: Release = "revert",
    ) -> None:
        self._clock = clock
        super().__init__(outputs=outputs, inputs=inputs, interlocks=interlocks)
        self._levels: dict[int, bool] = dict(outputs)
        self._levels.update({line: False for line in inputs})
        for line, high in (initial_inputs or {}).items():
            self._check_input(line)
            self._levels[line] = high
        self._edges: asyncio.Queue[LineEdge] = asyncio.Queue()
        self._open = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._chip = ChipFile(chip_file, release) if chip_file is not None else None
        self.output_changes: list[OutputChange] = []
        self.opened_count = 0
        add_listener = getattr(clock, "add_listener", None)
        if callable(add_listener):
            add_listener(self._lines.expire_due)

    @property
    def is_open(self) -> bool:
        """True between open() and close()."""
        return self._open

    async def open(self) -> None:
        if self._chip is not None:
            self._chip.claim({line: self._levels[line] for line in self.outputs})
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._open = True
        self.opened_count += 1
        self._lines.start()
        for line in self.inputs:
            self._apply_interlocks(line, self._levels[line])

    async def close(self) -> None:
        if not self._open:
            return
        self._lines.stop()
        self._open = False
        if self._chip is not None:
            self._chip.release_lines()

    def _check_open(self) -> None:
        if not self._open:
            raise GpioClosedError("simulated GPIO is not open")

    def _line_clock(self) -> float:
        return self._clock.monotonic()

    def _write_line(self, line: int, high: bool) -> None:
        if self._levels[line] != high:
            self._levels[line] = high
            self.output_changes.append(OutputChange(line, high, self._clock.monotonic()))
            if self._chip is not None:
                self._chip.set(line, high)

    def set_output(self, line: int, high: bool) -> None:
        self._check_output(line)
        self._check_open()
        self._lines.set(line, high)

    def read_input(self, line: int) -> bool:
        self._check_input(line)
        self._check_open()
        return self._levels[line]

    async def edges(self) -> AsyncIterator[LineEdge]:
        while True:
            yield await self._edges.get()

    # -- test side -------------------------------------------------------------

    def drive_input(self, line: int, high: bool) -> None:
        """Set an input level as the outside world would; queues an edge if it changed.

        Callable from any thread (a test may drive inputs while the loop is
        blocked); interlocks act at once, in the calling thread, like wiring.
        """
        self._check_input(line)
        if self._levels[line] == high:
            return
        self._levels[line] = high
        if self._open:
            self._apply_interlocks(line, high)
        edge = LineEdge(line, high, self._clock.monotonic())
        loop = self._loop
        if loop is not None and threading.get_ident() != self._loop_thread:
            loop.call_soon_threadsafe(self._edges.put_nowait, edge)
        else:
            self._edges.put_nowait(edge)

    def level(self, line: int) -> bool:
        """Current level of any claimed line (output or input)."""
        return self._levels[line]

    def actuations(self, line: int, *, to: bool = True) -> int:
        """How many times output ``line`` changed to level ``to``."""
        return sum(1 for c in self.output_changes if c.line == line and c.high is to)
