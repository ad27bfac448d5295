"""Policy-owned tables, created idempotently when a :class:`~facegate.policy.Policy` opens.

Policy decides what personal data beyond templates is collected, so it owns
the tables holding it (storage owns ``subjects``, ``templates``, ``consents``,
``outbox``, ``audit``; those are used through storage's APIs):

* ``policy_age``: the age evidence of a subject (birth date or age band).
  Needed to decide whether a guardian's consent is required (PIPL Art. 31).
  Deleted with the subject on erasure.
* ``policy_snapshots``: decision snapshots, only when the operator turned them
  on; AES-GCM sealed under the device snapshot key; kept at most
  ``privacy.retention.snapshot_hours``.

``CREATE ... IF NOT EXISTS`` keeps this additive to storage's versioned
migrations: an older database simply gains the tables, nothing is altered.
"""

from __future__ import annotations

from ..storage import Store

_STATEMENTS: tuple[str, ...] = (
    """CREATE TABLE IF NOT EXISTS policy_age (
        subject_id TEXT PRIMARY KEY,
        birth_date TEXT,
        age_band TEXT,
        recorded_at REAL NOT NULL,
        actor TEXT NOT NULL,
        CHECK (birth_date IS NOT NULL OR age_band IS NOT NULL)
    )""",
    """CREATE TABLE IF NOT EXISTS policy_snapshots (
        snapshot_id TEXT PRIMARY KEY,
        decision_id TEXT NOT NULL,
        subject_id TEXT,
        created_at REAL NOT NULL,
        ciphertext BLOB NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS policy_snapshots_by_age ON policy_snapshots(created_at)",
    "CREATE INDEX IF NOT EXISTS outbox_by_klass_created ON outbox(klass, created_at)",
)


async def ensure_schema(store: Store) -> None:
    """Create the policy tables if missing (one durable transaction)."""
    async with store.transaction() as tx:
        for sql in _STATEMENTS:
            await tx.execute(sql)
