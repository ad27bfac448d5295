"""The fleet licence service's seat table: its own SQLite file, schema versioned here.

The seat service (:mod:`facegate.policy.licence.seats`) decides who gets a seat; this
repository stores the seats. It is a separate database file from the device store (the
service runs on a fleet host, not on a device): WAL, ``synchronous=FULL``, so a seat
survives kill -9. The schema is :data:`~facegate.storage.migrations.SEAT_MIGRATIONS`,
applied forward-only in one ``BEGIN IMMEDIATE`` transaction on open; a file from a
newer facegate is refused (:class:`~facegate.storage.errors.SchemaTooNewError`).

Blocking calls: the service runs them in a thread.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .errors import SchemaTooNewError
from .migrations import SEAT_MIGRATIONS, SEAT_SCHEMA_VERSION


@dataclass(frozen=True)
class Seat:
    """One device's seat row."""

    fingerprint: str
    state: str  # 'active' | 'revoked'
    lease_expires: float
    extended_until: float


class SeatTable:
    """The seat table in SQLite (see module doc)."""

    def __init__(self, path: Path) -> None:
        self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        try:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            self._migrate(path)
        except BaseException:
            self._conn.close()
            raise

    def _migrate(self, path: Path) -> None:
        version = int(self._conn.execute("PRAGMA user_version").fetchone()[0])
        if version > SEAT_SCHEMA_VERSION:
            raise SchemaTooNewError(
                f"{path} has seat schema version {version}, newer than this facegate "
                f"supports ({SEAT_SCHEMA_VERSION}); refusing to open it"
            )
        if version == SEAT_SCHEMA_VERSION:
            return
        with self.transaction():
            for target, statements in SEAT_MIGRATIONS:
                if target <= version:
                    continue
                for sql in statements:
                    self._conn.execute(sql)
                self._conn.execute(f"PRAGMA user_version = {int(target)}")

    def close(self) -> None:
        self._conn.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One ``BEGIN IMMEDIATE`` transaction: committed on exit, rolled back on any exception."""
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    def get(self, fp: str) -> Seat | None:
        row = self._conn.execute(
            "SELECT fingerprint, state, lease_expires, extended_until FROM seats WHERE fingerprint = ?", (fp,)
        ).fetchone()
        return None if row is None else Seat(str(row[0]), str(row[1]), float(row[2]), float(row[3]))

    def used(self, now: float, grace_s: float) -> int:
        """Active seats whose lease plus ``grace_s`` has not lapsed at ``now``."""
        row = self._conn.execute(
            "SELECT COUNT(*) FROM seats WHERE state = 'active' AND lease_expires + ? > ?", (grace_s, now)
        ).fetchone()
        return int(row[0])

    def upsert_active(self, fp: str, *, now: float, expires: float) -> None:
        """A new active seat, or a renewed lease of an existing one (its state is kept)."""
        self._conn.execute(
            "INSERT INTO seats(fingerprint, state, activated_at, lease_expires, updated_at) "
            "VALUES (?, 'active', ?, ?, ?) ON CONFLICT(fingerprint) DO UPDATE SET "
            "lease_expires = excluded.lease_expires, updated_at = excluded.updated_at",
            (fp, now, expires, now),
        )

    def set_state(self, fp: str, state: str | None, now: float) -> bool:
        """Revoke (``'revoked'``) or release (``None``: delete) a device; False if unknown."""
        if state is None:
            n = self._conn.execute("DELETE FROM seats WHERE fingerprint = ?", (fp,)).rowcount
        else:
            n = self._conn.execute(
                "UPDATE seats SET state = ?, updated_at = ? WHERE fingerprint = ?", (state, now, fp)
            ).rowcount
        return n > 0

    def extend(self, fp: str, until: float, now: float) -> bool:
        """Leases of ``fp`` run at least until ``until`` (a longer offline period); False if unknown."""
        n = self._conn.execute(
            "UPDATE seats SET extended_until = ?, updated_at = ? WHERE fingerprint = ?", (until, now, fp)
        ).rowcount
        return n > 0

    def rows(self) -> list[tuple[str, str, float]]:
        """(fingerprint, state, lease expiry) of every seat, oldest activation first."""
        return [
            (str(a), str(b), float(c))
            for a, b, c in self._conn.execute(
                "SELECT fingerprint, state, lease_expires FROM seats ORDER BY activated_at"
            )
        ]
