"""Bulk decryption of the gallery, off the event loop.

A dedicated read-only SQLite connection reads one consistent snapshot (one
read transaction) in chunks; each chunk is fetched and decrypted in a worker
thread, then handed to the sink on the event loop as one ``add_batch`` per
model. Rows come in insertion order, which groups a subject's templates from one
enrolment together, so the DEK is unwrapped about once per enrolment.
"""

from __future__ import annotations

import asyncio
import inspect
import sqlite3
from collections import defaultdict
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import numpy.typing as npt
from cryptography.exceptions import InvalidTag

from ..runtime.clock import Clock
from .crypto import NONCE_BYTES, template_aad
from .errors import KeyUnavailableError, TamperError

if TYPE_CHECKING:
    from .keys import KeyRing

Embeddings = npt.NDArray[np.float32]

#: Rows decrypted per chunk. Two chunks are in flight (one decrypting, one going into the
#: sink), and their short-lived rows fragment the heap between the long-lived ids: 2,048
#: instead of 8,192 lowered a 100k load's peak RSS by ~30 MB at the same speed
#: (docs/performance.md, "Issue 16: ready to serve with a real gallery").
LOAD_BATCH = 2048


class TemplateSink(Protocol):
    """What the recognition matcher offers the gallery (sync or async methods)."""

    def add_batch(
        self,
        subject_ids: Sequence[str],
        template_ids: Sequence[str],
        embeddings: Embeddings,
        model_id: str,
    ) -> Awaitable[None] | None: ...

    def add(
        self, subject_id: str, template_id: str, embedding: Embeddings, model_id: str
    ) -> Awaitable[None] | None: ...

    def remove_subject(self, subject_id: str) -> Awaitable[int] | int: ...


@dataclass(frozen=True)
class TemplateFailure:
    subject_id: str
    template_id: str
    reason: str


@dataclass
class LoadReport:
    """Counts of one load; ``failures`` were quarantined, ``unavailable`` skipped.

    ``other_models`` counts templates of other model ids that were not loaded
    (they need re-enrolment after a model change).
    """

    templates: int = 0
    subjects: int = 0
    unavailable: int = 0
    other_models: int = 0
    seconds: float = 0.0
    failures: list[TemplateFailure] = field(default_factory=list)


@dataclass
class _Chunk:
    groups: dict[str, tuple[list[str], list[str], list[bytes]]]
    failures: list[TemplateFailure]
    unavailable: int
    subjects: int
    rows: int


class _Reader:
    """Owns the read connection; all methods run in a worker thread."""

    _SQL = (
        "SELECT t.subject_id, t.template_id, t.model_id, t.ciphertext, k.kek_id, k.wrapped "
        "FROM templates t LEFT JOIN vault.subject_keys k ON k.subject_id = t.subject_id "
        "WHERE t.quarantined_at IS NULL AND (?1 IS NULL OR t.model_id = ?1) ORDER BY t.rowid"
    )

    def __init__(self, path: Path, vault_path: Path, keys: KeyRing, model_id: str | None) -> None:
        self.keys = keys
        self.conn = sqlite3.connect(
            f"file:{path}?mode=ro", uri=True, check_same_thread=False, isolation_level=None
        )
        self.conn.execute("ATTACH DATABASE ? AS vault", (f"file:{vault_path}?mode=ro",))
        self.conn.execute("BEGIN")  # one snapshot for the whole load
        self.cur = self.conn.execute(self._SQL, (model_id,))
        row = self.conn.execute(
            "SELECT COUNT(*) FROM templates WHERE quarantined_at IS NULL "
            "AND (?1 IS NULL OR model_id = ?1)",
            (model_id,),
        ).fetchone()
        self.expected = int(row[0])
        self.other_models = 0
        if model_id is not None:
            row = self.conn.execute(
                "SELECT COUNT(*) FROM templates WHERE quarantined_at IS NULL AND model_id != ?",
                (model_id,),
            ).fetchone()
            self.other_models = int(row[0])
        self.last_sid: str | None = None
        self.dek: Any = None
        self.bad_subject: str | None = None
        self.seen: set[str] = set()

    def close(self) -> None:
        self.conn.close()

    def chunk(self, n: int) -> _Chunk:  # one tight loop, kept flat for speed
        rows = self.cur.fetchmany(n)
        groups: dict[str, tuple[list[str], list[str], list[bytes]]] = defaultdict(lambda: ([], [], []))
        failures: list[TemplateFailure] = []
        unavailable = subjects = 0
        for sid, tid, mid, ct, kid, wrapped in rows:
            if sid != self.last_sid:
                self.last_sid, self.bad_subject = sid, None
                if sid not in self.seen:
                    self.seen.add(sid)
                    subjects += 1
                if kid is None:
                    self.bad_subject = "key_missing"
                try:
                    if self.bad_subject is None:
                        self.dek = self.keys.unwrap(sid, kid, wrapped).aead
                except KeyUnavailableError:
                    self.bad_subject = "unavailable"
                except TamperError:
                    self.bad_subject = "wrapped_key_invalid"
            if self.bad_subject == "unavailable":
                unavailable += 1
                continue
            if self.bad_subject is not None:
                failures.append(TemplateFailure(sid, tid, self.bad_subject))
                continue
            try:
                pt = self.dek.decrypt(ct[:NONCE_BYTES], ct[NONCE_BYTES:], template_aad(sid, tid, mid))
            except InvalidTag:
                failures.append(TemplateFailure(sid, tid, "authentication_failed"))
                continue
            g = groups[mid]
            g[0].append(sid)
            g[1].append(tid)
            g[2].append(pt)
        return _Chunk(dict(groups), failures, unavailable, subjects, len(rows))


async def _call(result: Any) -> None:
    if inspect.isawaitable(result):
        await result


async def load_gallery(
    path: Path,
    vault_path: Path,
    keys: KeyRing,
    sink: TemplateSink,
    *,
    batch: int,
    clock: Clock,
    model_id: str | None = None,
) -> LoadReport:
    """Decrypt all loadable templates into ``sink`` (see module doc)."""
    start = clock.monotonic()
    report = LoadReport()
    reader = await asyncio.to_thread(_Reader, path, vault_path, keys, model_id)
    report.other_models = reader.other_models
    reserve = getattr(sink, "reserve", None)
    if callable(reserve):
        reserve(reader.expected)  # one allocation for the whole gallery (peak memory)
    try:
        # The next chunk is decrypted in a worker thread while this one goes into the sink.
        pending = asyncio.ensure_future(asyncio.to_thread(reader.chunk, batch))
        try:
            while True:
                chunk = await pending
                if chunk.rows == 0:
                    break
                pending = asyncio.ensure_future(asyncio.to_thread(reader.chunk, batch))
                report.subjects += chunk.subjects
                report.unavailable += chunk.unavailable
                report.failures.extend(chunk.failures)
                for mid, (sids, tids, pts) in chunk.groups.items():
                    arr = _stack(pts)
                    await _call(sink.add_batch(sids, tids, arr, mid))
                    report.templates += len(sids)
        finally:
            # The worker thread must be done with the reader before it is closed (a
            # thread cannot be cancelled); a prefetch after an earlier error is discarded.
            if not pending.done():
                await asyncio.wait([pending])
            if not pending.cancelled():
                pending.exception()
    finally:
        await asyncio.to_thread(reader.close)
    report.seconds = clock.monotonic() - start
    return report


def _stack(pts: Sequence[bytes]) -> np.ndarray[Any, np.dtype[np.float32]]:
    dims = {len(p) for p in pts}
    if len(dims) != 1:
        # Different dims under one model id can only come from a buggy writer;
        # stack per row so nothing is silently reshaped.
        raise ValueError(f"templates of one model have different sizes: {sorted(dims)}")
    return np.frombuffer(b"".join(pts), dtype=np.float32).reshape(len(pts), -1).copy()
