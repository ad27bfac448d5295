"""Which image a template was enrolled from: keyed image digests (resumable, idempotent enrolment).

What is digested
----------------
The *decoded pixels* of the enrolment image (BGR uint8, as the recognition
pipeline sees them) with their shape, not the file bytes. So a renamed copy, a
copy whose metadata (EXIF, comments) was stripped or edited, and a lossless
re-encoding (JPEG -> PNG/BMP/lossless WebP) of the same photo all have the same
digest. A lossy re-encoding, a crop or a resize is a different image and gets
its own template (bounded by ``storage.max_templates_per_subject``).

How
---
``HMAC-SHA256(key, "facegate/enrol-image/v1" || 0x00 || height, width, channels
|| pixels)`` under the device *image-digest key*: 32 random bytes kept sealed
under the KEK in the key vault like the other device secrets
(:mod:`facegate.storage.secrets`: re-wrapped by a KEK rotation, shredded with
the vault by teardown). Never a plain hash: a SHA-256 of a photo is an
identifier anyone holding the photo can compute; the keyed digest cannot be
linked to a photo without the vault's key.

Where
-----
On the template row (``templates.source_digest``, migration 6), unique over the
device: one image enrols at most one template of one subject. Every path that
deletes a template (erasure, withdrawal, retention, teardown) therefore deletes
its digest in the same statement (``secure_delete`` zeroes the freed bytes).
The digester and its key: :mod:`facegate.storage.image_digest`.
The digest never leaves the database: not in a log line, an MQTT payload or an
export (the export says how many templates came from a recorded image).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .db import Database, Tx
from .errors import ImageEnrolsAnotherSubjectError, InvalidInputError

DIGEST_BYTES = 32
_CHUNK = 500


def _check(digests: Sequence[bytes]) -> list[bytes]:
    out = [bytes(d) for d in digests]
    if any(len(d) != DIGEST_BYTES for d in out):
        raise InvalidInputError("an image digest must be 32 bytes")
    return out


async def owners(db: Database | Tx, digests: Sequence[bytes]) -> dict[bytes, str]:
    """Digest -> subject id of the template enrolled from it, for the digests already stored."""
    rows = await _select_in(
        db, "SELECT source_digest, subject_id FROM templates WHERE source_digest IN",
        list(dict.fromkeys(_check(digests))),
    )
    return {bytes(r[0]): str(r[1]) for r in rows}


async def _select_in(db: Database | Tx, head: str, values: list[Any]) -> list[Any]:
    """Rows of ``head (?, ?, ...)`` over ``values``, in chunks under SQLite's variable limit."""
    rows: list[Any] = []
    for i in range(0, len(values), _CHUNK):
        chunk = values[i : i + _CHUNK]
        # ``head`` is a constant of this module; only "?" marks are joined in.
        rows += await db.fetchall(f"{head} ({','.join('?' * len(chunk))})", chunk)
    return rows


async def new_indices(tx: Tx, subject_id: str, digests: Sequence[bytes]) -> list[int]:
    """Indices of ``digests`` not yet enrolled (first of any repeat), inside the writing ``tx``.

    A digest already enrolled for ``subject_id`` is left out (idempotent
    retry); one enrolled for another subject raises
    :class:`ImageEnrolsAnotherSubjectError` (one photo cannot enrol two people).
    """
    checked = _check(digests)
    known = await owners(tx, checked)
    if any(sid != subject_id for sid in known.values()):
        raise ImageEnrolsAnotherSubjectError(
            "an image already enrols another subject (one photo cannot enrol two people)"
        )
    seen: set[bytes] = set(known)
    keep: list[int] = []
    for i, d in enumerate(checked):
        if d not in seen:
            seen.add(d)
            keep.append(i)
    return keep


async def count_with_source(db: Database, subject_id: str) -> int:
    """How many of the subject's templates record the image they came from (a count, no digest)."""
    row = await db.fetchone(
        "SELECT COUNT(*) FROM templates WHERE subject_id = ? AND source_digest IS NOT NULL", (subject_id,)
    )
    return int(row[0]) if row else 0


async def digests_of(db: Database, template_ids: Sequence[str]) -> list[bytes]:
    """The recorded image digests of the given templates (memory only: to tell which images were new)."""
    rows = await _select_in(
        db,
        "SELECT source_digest FROM templates WHERE source_digest IS NOT NULL AND template_id IN",
        list(template_ids),
    )
    return [bytes(r[0]) for r in rows]
