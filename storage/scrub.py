"""Erasure reaches the outbox: no name or id of an erased subject stays in a stored event.

Outbox payloads are JSON written by the device (``event/access``, ``event/door``,
``event/security``) and by the policy (``event/privacy`` receipts). Delivered rows
are kept ``outbox_days`` (7) and pending rows until delivered, so without this an
erased person's pseudonymous id (and, from versions that stored them, the display
name) stayed on disk and in every backup for a week (issue 10.4).

:func:`scrub_subject` runs inside the erasure transaction, before the erasure
receipt is written: every row whose ``subject_id`` is the subject gets
``subject_id = null`` and loses any ``name`` field; pending rows are still
delivered (the event happened), just without the person. The database runs
with ``secure_delete`` on and erasure checkpoints the WAL, so the old bytes are
overwritten. The erasure receipt itself must name the subject so consumers can
erase their copies; it is the one row left, and the retention sweep purges it
``outbox_days`` after delivery.
"""

from __future__ import annotations

from .db import Tx


async def scrub_subject(tx: Tx, subject_id: str) -> int:
    """Remove ``subject_id`` (and any display name) from every outbox row; returns rows changed."""
    return await tx.execute(
        "UPDATE outbox SET payload = CAST(json_remove(json_set(CAST(payload AS TEXT), "
        "'$.subject_id', NULL), '$.name') AS BLOB) "
        "WHERE json_valid(CAST(payload AS TEXT)) "
        "AND json_extract(CAST(payload AS TEXT), '$.subject_id') = ?",
        (subject_id,),
    )
