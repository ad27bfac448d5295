"""In-memory GPIO lines for tests and the demo.

Tests drive inputs with :meth:`SimulatedGpio.drive_input` and inspect outputs
with :meth:`SimulatedGpio.level` and :attr:`SimulatedGpio.output_changes`,
which records every output change (so a test can count relay actuations).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass

from ...runtime.clock import Clock
from .base import GpioClosedError, GpioDriver, LineEdge


@dataclass(frozen=True, slots=True)
class OutputChange:
    """One output level change recorded by the simulator."""

    line: int
    high: bool
    monotonic: float


class SimulatedGpio(GpioDriver):
    """A chip whose lines live in memory. Inputs start low unless ``initial_inputs`` says so."""

    def __init__(
        self,
        *,
        outputs: Mapping[int, bool],
        inputs: Sequence[int],
        clock: Clock,
        initial_inputs: Mapping[int, bool] | None = None,
    ) -> None:
        super().__init__(outputs=outputs, inputs=inputs)
        self._clock = clock
        self._levels: dict[int, bool] = dict(outputs)
        self._levels.update({line: False for line in inputs})
        for line, high in (initial_inputs or {}).items():
            self._check_input(line)
            self._levels[line] = high
        self._edges: asyncio.Queue[LineEdge] = asyncio.Queue()
        self._open = False
        self.output_changes: list[OutputChange] = []
        self.opened_count = 0

    @property
    def is_open(self) -> bool:
        """True between open() and close()."""
        return self._open

    async def open(self) -> None:
        self._open = True
        self.opened_count += 1

    async def close(self) -> None:
        self._open = False

    def set_output(self, line: int, high: bool) -> None:
        self._check_output(line)
        if not self._open:
            raise GpioClosedError("simulated GPIO is not open")
        if self._levels[line] != high:
            self._levels[line] = high
            self.output_changes.append(OutputChange(line, high, self._clock.monotonic()))

    def read_input(self, line: int) -> bool:
        self._check_input(line)
        if not self._open:
            raise GpioClosedError("simulated GPIO is not open")
        return self._levels[line]

    async def edges(self) -> AsyncIterator[LineEdge]:
        while True:
            yield await self._edges.get()

    # -- test side -------------------------------------------------------------

    def drive_input(self, line: int, high: bool) -> None:
        """Set an input level as the outside world would; queues an edge if it changed."""
        self._check_input(line)
        if self._levels[line] != high:
            self._levels[line] = high
            self._edges.put_nowait(LineEdge(line, high, self._clock.monotonic()))

    def level(self, line: int) -> bool:
        """Current level of any claimed line (output or input)."""
        return self._levels[line]

    def actuations(self, line: int, *, to: bool = True) -> int:
        """How many times output ``line`` changed to level ``to``."""
        return sum(1 for c in self.output_changes if c.line == line and c.high is to)
