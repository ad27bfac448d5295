"""Config section of the encrypted store (owned by storage/)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ._fields import setting


@dataclass(frozen=True)
class StorageSection:
    """The SQLite file and its key-encryption key."""

    path: Path = setting(Path("facegate.db"), doc="SQLite database file (WAL beside it).")
