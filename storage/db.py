"""The SQLite file: connection, pragmas, migrations, integrity check, transactions.

Contract
--------
* Two files: the main database and the key vault (``<name>.keys.db``,
  attached as schema ``vault``), which holds only wrapped data keys and KEK
  facts, so that deleting a key row crypto-shreds every copy of the main file.
* One aiosqlite connection per :class:`Database`, in autocommit mode; every
  write goes through :meth:`Database.transaction` (``BEGIN IMMEDIATE`` ...
  ``COMMIT``), serialised by an asyncio lock. Other processes (CLI tools)
  may write the same file concurrently: WAL plus the busy timeout handle it.
* Pragmas: WAL, ``foreign_keys=ON``, ``secure_delete=ON`` (deleted rows are
  zeroed, so erased ciphertexts do not linger in free pages), a busy timeout,
  and ``synchronous=FULL`` for durable transactions (enrolment, consent,
  erasure, audit, access events) or ``NORMAL`` for best-effort ones
  (telemetry, delivery marks) which in WAL mode survive a process kill but
  may lose the last commits on power loss.
* Start-up runs ``quick_check`` (or ``integrity_check``). A failure publishes
  a :class:`SecurityEvent` and raises :class:`IntegrityCheckError` unless
  ``repair=True``, which first copies the file aside (nothing is dropped),
  then ``REINDEX``es and checks again.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import aiosqlite
import structlog

from ..runtime.clock import Clock, SystemClock
from ..runtime.events import Event, SecurityEvent, SecurityKind
from .errors import DatabaseError, IntegrityCheckError, SchemaTooNewError
from .filemodes import private_file
from .migrations import MIGRATIONS, SCHEMA_VERSION, VAULT_MIGRATIONS, VAULT_SCHEMA_VERSION

_log = structlog.get_logger("facegate.storage")

Publish = Callable[[Event], None]
Row = tuple[Any, ...]


def _no_publish(_: Event) -> None:
    return None


def default_vault_path(path: Path) -> Path:
    """``facegate.db`` -> ``facegate.keys.db`` (same directory)."""
    return path.with_name(f"{path.stem}.keys{path.suffix or '.db'}")


class Tx:
    """One open write transaction. Valid only inside ``async with db.transaction()``.

    ``at`` is the wall time of the transaction (from the injected clock).
    Events passed to :meth:`publish_after_commit` are published only if the
    transaction commits, so nobody hears about a change that was rolled back.
    """

    def __init__(self, conn: aiosqlite.Connection, at: float) -> None:
        self._conn = conn
        self.at = at
        self._after: list[Event] = []
        self._callbacks: list[Callable[[], None]] = []

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement; returns the affected row count."""
        cur = await self._conn.execute(sql, params)
        count = cur.rowcount
        await cur.close()
        return count

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        cur = await self._conn.executemany(sql, rows)
        await cur.close()

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        cur = await self._conn.execute(sql, params)
        row = await cur.fetchone()
        await cur.close()
        return tuple(row) if row is not None else None

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        cur = await self._conn.execute(sql, params)
        rows = await cur.fetchall()
        await cur.close()
        return [tuple(r) for r in rows]

    def publish_after_commit(self, event: Event) -> None:
        self._after.append(event)

    def on_commit(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` (synchronously, quickly) after a successful commit."""
        self._callbacks.append(fn)


class Database:
    """An open facegate SQLite file. Use as an async context manager."""

    def __init__(
        self,
        path: Path | str,
        *,
        vault_path: Path | str | None = None,
        busy_timeout_ms: int = 5000,
        integrity: Literal["quick", "full", "off"] = "quick",
        repair: bool = False,
        clock: Clock | None = None,
        publish: Publish | None = None,
    ) -> None:
        self.path = Path(path)
        self.vault_path = Path(vault_path) if vault_path is not None else default_vault_path(self.path)
        self.busy_timeout_ms = busy_timeout_ms
        self.integrity = integrity
        self.repair = repair
        self.clock: Clock = clock or SystemClock()
        self.publish: Publish = publish or _no_publish
        self._conn: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()
        self._sync: str = ""

    async def __aenter__(self) -> Database:
        await self.open()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    @property
    def conn(self) -> aiosqlite.Connection:
        if self._conn is None:
            raise DatabaseError("database is not open")
        return self._conn

    async def open(self) -> None:
        """Connect, set pragmas, check integrity, migrate. Raises DatabaseError subclasses."""
        try:
            # 0600 files (and a 0700 data dir when created) whatever the umask: SQLite
            # gives -wal/-shm the database file's mode (issue 10.5).
            for path in (self.path, self.vault_path):
                await asyncio.to_thread(private_file, path)
        except OSError as exc:
            where = exc.filename or self.path
            raise DatabaseError(f"cannot create database {where}: {exc.strerror}") from None
        try:
            self._conn = await aiosqlite.connect(str(self.path), isolation_level=None)
        except sqlite3.Error as exc:
            raise DatabaseError(f"cannot open database {self.path}: {exc}") from None
        try:
            await self._pragmas()
            await self._check_integrity()
            await self._migrate()
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await conn.close()

    async def _exec(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """Run one statement to completion and close its cursor."""
        rows = await self.conn.execute_fetchall(sql, params)
        return [tuple(r) for r in rows]

    async def _pragmas(self) -> None:
        try:
            await self._exec(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
            await self._exec("ATTACH DATABASE ? AS vault", (str(self.vault_path),))
            for schema, path in (("main", self.path), ("vault", self.vault_path)):
                rows = await self._exec(f"PRAGMA {schema}.journal_mode = WAL")
                mode = rows[0] if rows else None
                if mode is None or str(mode[0]).lower() != "wal":
                    raise DatabaseError(f"{path}: cannot switch to WAL mode (got {mode})")
                await self._exec(f"PRAGMA {schema}.secure_delete = ON")
            await self._exec("PRAGMA foreign_keys = ON")
            await self._set_sync("FULL")
        except sqlite3.DatabaseError as exc:
            raise DatabaseError(f"{self.path} is not a usable SQLite database: {exc}") from None

    async def _set_sync(self, level: str) -> None:
        if self._sync != level:
            await self._exec(f"PRAGMA main.synchronous = {level}")
            await self._exec(f"PRAGMA vault.synchronous = {level}")
            self._sync = level

    async def _run_check(self) -> list[str]:
        pragma = "integrity_check" if self.integrity == "full" else "quick_check"
        try:
            rows = await self._exec(f"PRAGMA {pragma}")
        except sqlite3.DatabaseError as exc:
            return [str(exc)]
        result = [str(r[0]) for r in rows]
        return [] if result == ["ok"] else result

    async def _check_integrity(self) -> None:
        if self.integrity == "off":
            return
        problems = await self._run_check()
        if not problems:
            return
        self.publish(
            SecurityEvent(
                at=self.clock.wall(),
                kind=SecurityKind.INTEGRITY_FAILURE,
                detail=f"database integrity check failed ({len(problems)} problem(s))",
                source="storage",
            )
        )
        _log.error("storage.integrity_failed", problems=len(problems), repair=self.repair)
        if not self.repair:
            raise IntegrityCheckError(
                f"{self.path}: integrity check failed: {problems[0]} "
                f"({len(problems)} problem(s)); refusing to start (use --repair)"
            )
        backup = self.path.with_name(f"{self.path.name}.corrupt-{int(self.clock.wall())}")
        await self._exec("PRAGMA wal_checkpoint(TRUNCATE)")
        await asyncio.to_thread(shutil.copy2, self.path, backup)
        _log.warning("storage.repair_started", backup=str(backup))
        try:
            await self._exec("REINDEX")
        except sqlite3.DatabaseError:
            await self._rebuild(backup)
        problems = await self._run_check()
        if problems:
            raise IntegrityCheckError(
                f"{self.path}: still corrupt after repair: {problems[0]} (copy kept at {backup})"
            )
        _log.warning("storage.repaired", backup=str(backup))

    async def _rebuild(self, backup: Path) -> None:
        """Copy every table row into a fresh file with the same schema and swap it in.

        Table scans do not read the (damaged) index b-trees; the fresh file's
        indexes are rebuilt from the rows.
        """
        fresh = self.path.with_name(f"{self.path.name}.rebuild")
        await asyncio.to_thread(fresh.unlink, missing_ok=True)
        await asyncio.to_thread(private_file, fresh)
        try:
            schema = await self._exec(
                "SELECT type, name, sql FROM main.sqlite_schema "
                "WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite_%' ORDER BY type DESC"
            )
            version = (await self._exec("PRAGMA main.user_version"))[0][0]
            await self._exec("ATTACH DATABASE ? AS rebuild", (str(fresh),))
            await self._exec("PRAGMA foreign_keys = OFF")
            await self._exec("BEGIN IMMEDIATE")
            for kind, name, sql in schema:
                verb = "CREATE TABLE " if kind == "table" else f"CREATE {kind.upper()} "
                if str(sql).startswith("CREATE UNIQUE INDEX "):  # templates_by_source (migration 6)
                    verb = "CREATE UNIQUE INDEX "
                await self._exec(str(sql).replace(verb, f"{verb}rebuild.", 1))
                if kind == "table":
                    # WHERE 1 disables the transfer optimisation, which would copy the
                    # damaged index pages verbatim instead of rebuilding them.
                    await self._exec(
                        f'INSERT INTO rebuild."{name}" '  # noqa: S608  # names come from sqlite_schema
                        f'SELECT * FROM main."{name}" NOT INDEXED WHERE 1'
                    )
            if await self._exec("SELECT 1 FROM main.sqlite_schema WHERE name = 'sqlite_sequence'"):
                await self._exec("INSERT INTO rebuild.sqlite_sequence SELECT * FROM main.sqlite_sequence")
            await self._exec(f"PRAGMA rebuild.user_version = {int(version)}")
            await self._exec("COMMIT")
        except sqlite3.DatabaseError as exc:
            raise IntegrityCheckError(f"{self.path}: repair failed: {exc} (copy kept at {backup})") from None
        await self.close()
        for suffix in ("-wal", "-shm"):
            await asyncio.to_thread(Path(f"{self.path}{suffix}").unlink, missing_ok=True)
        await asyncio.to_thread(os.replace, fresh, self.path)
        self._conn = await aiosqlite.connect(str(self.path), isolation_level=None)
        self._sync = ""
        await self._pragmas()

    async def _migrate(self) -> None:
        await self._migrate_schema("main", self.path, MIGRATIONS, SCHEMA_VERSION)
        await self._migrate_schema("vault", self.vault_path, VAULT_MIGRATIONS, VAULT_SCHEMA_VERSION)

    async def _migrate_schema(
        self,
        schema: str,
        path: Path,
        migrations: tuple[tuple[int, tuple[str, ...]], ...],
        latest: int,
    ) -> None:
        rows = await self._exec(f"PRAGMA {schema}.user_version")
        version = int(rows[0][0]) if rows else 0
        if version > latest:
            raise SchemaTooNewError(
                f"{path} has schema version {version}, newer than this facegate "
                f"supports ({latest}); refusing to open it"
            )
        if version == latest:
            return
        await self._exec("BEGIN IMMEDIATE")
        try:
            for target, statements in migrations:
                if target <= version:
                    continue
                for sql in statements:
                    await self._exec(sql)
                await self._exec(f"PRAGMA {schema}.user_version = {int(target)}")
            await self._exec("COMMIT")
        except BaseException:
            await self._exec("ROLLBACK")
            raise
        _log.info("storage.migrated", schema=schema, from_version=version, to_version=latest)

    @asynccontextmanager
    async def transaction(self, *, durable: bool = True) -> AsyncIterator[Tx]:
        """A serialised ``BEGIN IMMEDIATE`` transaction; commits on success, else rolls back.

        ``durable=True`` commits with ``synchronous=FULL`` (survives power loss).
        """
        async with self._lock:
            await self._set_sync("FULL" if durable else "NORMAL")
            conn = self.conn
            await conn.execute("BEGIN IMMEDIATE")
            tx = Tx(conn, self.clock.wall())
            try:
                yield tx
            except BaseException:
                # Shielded: a cancellation must not leave the transaction open.
                await asyncio.shield(conn.execute("ROLLBACK"))
                raise
            await asyncio.shield(conn.execute("COMMIT"))
        for fn in tx._callbacks:
            fn()
        for event in tx._after:
            self.publish(event)

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """A read outside any transaction (sees only committed data)."""
        async with self._lock:
            cur = await self.conn.execute(sql, params)
            rows = await cur.fetchall()
            await cur.close()
        return [tuple(r) for r in rows]

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        rows = await self.fetchall(sql, params)
        return rows[0] if rows else None

    async def checkpoint(self) -> tuple[int, int, int]:
        """``wal_checkpoint(TRUNCATE)``: copy the WAL into the file and empty it.

        Returns (busy, wal frames, checkpointed frames). busy=1 means a reader
        in another process kept some frames alive.
        """
        row = await self.fetchone("PRAGMA wal_checkpoint(TRUNCATE)")
        assert row is not None
        return int(row[0]), int(row[1]), int(row[2])

    async def integrity_problems(self) -> list[str]:
        """Run the full ``integrity_check`` now; empty list means OK."""
        async with self._lock:
            cur = await self.conn.execute("PRAGMA integrity_check")
            rows = await cur.fetchall()
        result = [str(r[0]) for r in rows]
        return [] if result == ["ok"] else result
