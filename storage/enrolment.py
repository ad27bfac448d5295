"""Batched enrolment writes (used by :class:`Gallery` for one subject or thousands).

A batch costs a fixed number of statements however many subjects it holds:
keys are looked up and created with ``IN (...)`` queries and ``executemany``,
and the audit chain for the whole batch is computed in memory.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from . import audit
from .crypto import DEK_MAX_USES, new_key, seal, template_aad, wrap_dek
from .db import Tx
from .errors import InvalidInputError, KeyMaterialError
from .keys import KeyRing
from .uuid7 import uuid7_str

Embeddings = npt.NDArray[np.float32]
_CHUNK = 500
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$")


def check_id(value: str, what: str) -> str:
    if not isinstance(value, str) or not _ID.match(value):
        raise InvalidInputError(
            f"invalid {what}: use 1-128 characters from A-Z a-z 0-9 . _ : @ - "
            "(starting with a letter or digit)"
        )
    return value


def as_embeddings(embeddings: Any) -> Embeddings:
    arr = np.asarray(embeddings, dtype=np.float32)
    if arr.ndim == 1:
        arr = arr.reshape(1, -1)
    if arr.ndim != 2 or arr.shape[0] < 1 or not 8 <= arr.shape[1] <= 4096:
        raise InvalidInputError(f"embeddings must be (n, d) with n >= 1, 8 <= d <= 4096; got {arr.shape}")
    if not np.isfinite(arr).all():
        raise InvalidInputError("embeddings contain NaN or infinity")
    return np.ascontiguousarray(arr)


@dataclass(frozen=True)
class EnrolResult:
    subject_id: str
    template_ids: tuple[str, ...]
    created_subject: bool
    already_enrolled: int = 0
    """Images left out because this subject is already enrolled from them (idempotent retry)."""


def _chunks(ids: Sequence[str]) -> Iterator[Sequence[str]]:
    for i in range(0, len(ids), _CHUNK):
        yield ids[i : i + _CHUNK]


async def _select_in(tx: Tx, sql: str, ids: Sequence[str]) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = []
    for chunk in _chunks(ids):
        out.extend(await tx.fetchall(sql.format(marks=",".join("?" * len(chunk))), chunk))
    return out


async def create_missing_keys(tx: Tx, keys: KeyRing, subject_ids: Sequence[str]) -> int:
    """Create and wrap a DEK for each subject that has none; returns how many."""
    have = {
        str(r[0])
        for r in await _select_in(
            tx, "SELECT subject_id FROM vault.subject_keys WHERE subject_id IN ({marks})", subject_ids
        )
    }
    missing = [s for s in dict.fromkeys(subject_ids) if s not in have]
    if not missing:
        return 0
    kid, kek = await keys.wrapping_key(tx)
    await tx.executemany(
        "INSERT INTO vault.subject_keys(subject_id, kek_id, wrapped, uses, created_at) "
        "VALUES (?, ?, ?, 0, ?)",
        [(s, kid, wrap_dek(kek, kid, s, new_key()), tx.at) for s in missing],
    )
    await keys.count_wraps(tx, len(missing))
    return len(missing)


async def enrol_batch(
    tx: Tx,
    keys: KeyRing,
    items: Sequence[tuple[str, Embeddings]],
    model_id: str,
    *,
    actor: str,
    consent_ref: str | None,
    max_per_subject: int,
    sources: Mapping[str, Sequence[bytes | None]] | None = None,
) -> list[EnrolResult]:
    """Encrypt and insert templates for validated ``items`` inside ``tx``.

    ``sources``: per subject, the keyed digest of the image each embedding came
    from (``storage/image_sources.py``), or None; stored on the template row.
    """
    sids = [s for s, _ in items]
    if len(set(sids)) != len(sids):
        raise InvalidInputError("a subject appears twice in one enrolment batch")
    await create_missing_keys(tx, keys, sids)
    deks: dict[str, tuple[AESGCM, int]] = {}
    for sid, kid, wrapped, uses in await _select_in(
        tx,
        "SELECT subject_id, kek_id, wrapped, uses FROM vault.subject_keys WHERE subject_id IN ({marks})",
        sids,
    ):
        if str(kid) not in keys.held_ids:
            await keys.refresh(tx)
        deks[str(sid)] = (keys.unwrap(str(sid), str(kid), bytes(wrapped)).aead, int(uses))
    existing = {
        str(r[0]): int(r[1])
        for r in await _select_in(
            tx,
            "SELECT s.subject_id, (SELECT COUNT(*) FROM templates t WHERE t.subject_id = s.subject_id) "
            "FROM subjects s WHERE s.subject_id IN ({marks})",
            sids,
        )
    }
    template_rows: list[tuple[Any, ...]] = []
    results: list[EnrolResult] = []
    audit_rows: list[audit.PendingRow] = []
    for sid, arr in items:
        total = existing.get(sid, 0) + len(arr)
        if total > max_per_subject:
            raise InvalidInputError(f"subject {sid} would have {total} templates (limit {max_per_subject})")
        aead, uses = deks[sid]
        if uses + len(arr) > DEK_MAX_USES:
            raise KeyMaterialError(f"subject {sid}: data key use limit reached")
        tids = tuple(uuid7_str() for _ in range(len(arr)))
        digests = list((sources or {}).get(sid) or [None] * len(arr))
        if len(digests) != len(arr):
            raise InvalidInputError(f"subject {sid}: {len(digests)} image digests for {len(arr)} embeddings")
        template_rows.extend(
            (sid, tid, model_id, seal(aead, vec.tobytes(), template_aad(sid, tid, model_id)), tx.at, dig)
            for tid, vec, dig in zip(tids, arr, digests, strict=True)
        )
        results.append(EnrolResult(sid, tids, sid not in existing))
        audit_rows.append(
            audit.PendingRow(
                actor,
                audit.AuditAction.ENROL,
                sid,
                {"templates": len(arr), "model_id": model_id, "consent_ref": consent_ref},
            )
        )
    await tx.executemany(
        "INSERT INTO subjects(subject_id, created_at, updated_at) VALUES (?, ?, ?) "
        "ON CONFLICT(subject_id) DO UPDATE SET updated_at = excluded.updated_at",
        [(sid, tx.at, tx.at) for sid in sids],
    )
    await tx.executemany(
        "INSERT INTO templates(subject_id, template_id, model_id, ciphertext, created_at, source_digest) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        template_rows,
    )
    await tx.executemany(
        "UPDATE vault.subject_keys SET uses = uses + ? WHERE subject_id = ?",
        [(len(arr), sid) for sid, arr in items],
    )
    await audit.append_many(tx, audit_rows)
    return results
