"""GPIO through the Linux character device with libgpiod v2 (the optional ``gpio`` extra).

``gpiod`` is imported lazily so that the rest of facegate works without it;
a missing package or chip is a :class:`GpioUnavailableError` with a hint.
Edge events are read when the request's file descriptor becomes readable
(``loop.add_reader``), so no thread blocks on ``wait_edge_events``.

Pulses end from the driver's own thread (:class:`~.pulse.LineOwner`), which
also polls interlock inputs (fire release) every ``interlock_poll_s``: both
work while the event loop is stalled. When the process dies the kernel
releases the request: most kernels return the line to its default (input,
pulled by the board), Raspberry Pi kernels keep the last driven level. The
systemd unit's ``ExecStopPost=facegate gpio safe`` covers the second case.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from ...runtime.clock import Clock
from .base import GpioClosedError, GpioDriver, GpioUnavailableError, Interlock, LineEdge


def _import_gpiod() -> Any:
    try:
        return importlib.import_module("gpiod")
    except ImportError:
        raise GpioUnavailableError(
            "gpio.driver = 'gpiod' needs the gpiod v2 package: pip install 'facegate[gpio]'"
        ) from None


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class GpiodGpio(GpioDriver):
    """Lines of one ``/dev/gpiochipN`` claimed in a single request under consumer ``facegate``."""

    def __init__(
        self,
        *,
        chip: Path,
        outputs: Mapping[int, bool],
        inputs: Sequence[int],
        clock: Clock,
        debounce_ms: int = 20,
        consumer: str = "facegate",
        interlocks: Sequence[Interlock] = (),
        interlock_poll_s: float = 0.02,
    ) -> None:
        self._clock = clock
        super().__init__(outputs=outputs, inputs=inputs, interlocks=interlocks)
        self._chip = chip
        if self.interlocks:
            self._lines.set_poller(self._poll_interlocks, interlock_poll_s)
        self._debounce = timedelta(milliseconds=debounce_ms)
        self._consumer = consumer
        self._gpiod: Any = None
        self._request: Any = None

    async def open(self) -> None:
        gpiod = _import_gpiod()
        self._gpiod = gpiod
        if not self._chip.exists():
            raise GpioUnavailableError(f"GPIO chip {self._chip} does not exist")
        config: dict[int, Any] = {}
        for line, high in self.outputs.items():
            config[line] = gpiod.LineSettings(
                direction=gpiod.line.Direction.OUTPUT,
                output_value=gpiod.line.Value.ACTIVE if high else gpiod.line.Value.INACTIVE,
            )
        for line in self.inputs:
            config[line] = gpiod.LineSettings(
                direction=gpiod.line.Direction.INPUT,
                edge_detection=gpiod.line.Edge.BOTH,
                debounce_period=self._debounce,
            )
        try:
            # A single ioctl, but it may sleep in the kernel on a busy chip.
            self._request = await asyncio.to_thread(
                gpiod.request_lines, str(self._chip), consumer=self._consumer, config=config
            )
        except OSError as exc:
            raise GpioUnavailableError(
                f"cannot claim lines {sorted(config)} on {self._chip}: {exc.strerror}"
            ) from None
        self._lines.start()

    async def close(self) -> None:
        if self._request is not None:
            self._lines.stop()
        request, self._request = self._request, None
        if request is not None:
            request.release()

    def _check_open(self) -> None:
        self._req()

    def _line_clock(self) -> float:
        return self._clock.monotonic()

    def _write_line(self, line: int, high: bool) -> None:
        value = self._gpiod.line.Value.ACTIVE if high else self._gpiod.line.Value.INACTIVE
        self._req().set_value(line, value)

    def _poll_interlocks(self) -> None:
        if self._request is None:
            return
        for lock in self.interlocks:
            self._apply_interlocks(lock.input_line, self.read_input(lock.input_line))

    def _req(self) -> Any:
        if self._request is None:
            raise GpioClosedError(f"GPIO chip {self._chip} is not open")
        return self._request

    def set_output(self, line: int, high: bool) -> None:
        self._check_output(line)
        self._req()
        self._lines.set(line, high)

    def read_input(self, line: int) -> bool:
        self._check_input(line)
        request = self._req()
        return bool(request.get_value(line) == self._gpiod.line.Value.ACTIVE)

    async def edges(self) -> AsyncIterator[LineEdge]:
        loop = asyncio.get_running_loop()
        rising = self._gpiod.EdgeEvent.Type.RISING_EDGE
        while True:
            request = self._req()
            readable: asyncio.Future[None] = loop.create_future()
            loop.add_reader(request.fd, _wake, readable)
            try:
                await readable
            finally:
                loop.remove_reader(request.fd)
            for ev in request.read_edge_events():
                yield LineEdge(ev.line_offset, ev.event_type == rising, self._clock.monotonic())
