"""A file standing in for a GPIO chip and its kernel, shared across processes.

:class:`SimulatedGpio` with ``chip_file`` writes every output level to this
file together with the id of the process that holds the lines. Readers in any
process (tests, ``facegate gpio safe``) see the *physical* level through
:func:`physical_level`, which models what the kernel does with a line whose
holder released it or died:

- ``revert``: the line returns to its default level (low), as most kernels do
  when a GPIO request is released and the pin falls back to its pull;
- ``keep``: the line keeps the last driven level, as Raspberry Pi kernels do
  (a fail-secure strike energised at the moment of a ``kill -9`` stays unlocked
  until something drives it again).

Writes are atomic (``os.replace``). Claiming lines held by another live
process fails like a busy kernel line.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from .base import GpioUnavailableError

Release = Literal["revert", "keep"]
DEFAULT_LEVEL = False


@dataclass(frozen=True, slots=True)
class ChipState:
    """The file's content: holder pid (None: released), release model, last levels."""

    owner: int | None
    release: Release
    levels: dict[int, bool]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_state(path: Path) -> ChipState | None:
    """The chip file's state, or None when nothing ever claimed a line."""
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    return ChipState(
        owner=raw.get("owner"),
        release="keep" if raw.get("release") == "keep" else "revert",
        levels={int(k): bool(v) for k, v in raw.get("levels", {}).items()},
    )


def physical_level(path: Path, line: int) -> bool:
    """The level a meter on ``line`` would read now, applying the release model."""
    state = read_state(path)
    if state is None or line not in state.levels:
        return DEFAULT_LEVEL
    held = state.owner is not None and _alive(state.owner)
    if held or state.release == "keep":
        return state.levels[line]
    return DEFAULT_LEVEL


def holder(path: Path) -> int | None:
    """Pid of the live process holding the lines, if any."""
    state = read_state(path)
    if state is None or state.owner is None or not _alive(state.owner):
        return None
    return state.owner


class ChipFile:
    """The writing side, used by one open :class:`SimulatedGpio`."""

    def __init__(self, path: Path, release: Release) -> None:
        self.path = path
        self.release = release
        self._levels: dict[int, bool] = {}

    def claim(self, levels: dict[int, bool]) -> None:
        """Take the lines (fails if another live process holds them) and write their levels."""
        other = holder(self.path)
        if other is not None and other != os.getpid():
            raise GpioUnavailableError(f"simulated chip {self.path} is held by process {other}")
        state = read_state(self.path)
        self._levels = dict(state.levels) if state is not None else {}
        # What the kernel left on the lines after the last holder, before we drive them.
        for line in list(self._levels):
            self._levels[line] = physical_level(self.path, line)
        self._levels.update(levels)
        self._write(os.getpid())

    def set(self, line: int, level: bool) -> None:
        """Record a new output level."""
        self._levels[line] = level
        self._write(os.getpid())

    def release_lines(self) -> None:
        """Give the lines back to the modelled kernel (the release model applies)."""
        self._write(None)

    def _write(self, owner: int | None) -> None:
        body = {
            "owner": owner,
            "release": self.release,
            "levels": {str(k): v for k, v in sorted(self._levels.items())},
        }
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(body))
        os.replace(tmp, self.path)
