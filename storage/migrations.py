"""Versioned, forward-only schema migrations.

The schema version lives in ``PRAGMA user_version``. At start-up every
migration newer than the file's version is applied, all inside one
``BEGIN IMMEDIATE`` transaction, so a crash leaves the old version intact.
A file whose version is newer than :data:`SCHEMA_VERSION` is refused.

Append new migrations to :data:`MIGRATIONS`; never edit a released one.
"""

from __future__ import annotations

# Each entry: (version it produces, statements). Statements are executed one
# by one (not executescript, which would commit behind our back).
MIGRATIONS: tuple[tuple[int, tuple[str, ...]], ...] = (
    (
        1,
        (
            # Pseudonymous subjects. attrs = sealed JSON (display name, attributes)
            # under the subject's DEK (which lives in the vault file).
            """CREATE TABLE subjects (
                subject_id TEXT PRIMARY KEY,
                created_at REAL NOT NULL,
                updated_at REAL NOT NULL,
                last_match_at REAL,
                attrs BLOB
            )""",
            """CREATE TABLE templates (
                subject_id TEXT NOT NULL
                    REFERENCES subjects(subject_id) ON DELETE CASCADE,
                template_id TEXT NOT NULL,
                model_id TEXT NOT NULL,
                ciphertext BLOB NOT NULL,
                created_at REAL NOT NULL,
                quarantined_at REAL,
                quarantine_reason TEXT,
                UNIQUE (subject_id, template_id)
            )""",
            # Consent records (filled by policy/). No foreign key: consent is
            # recorded before a subject is enrolled and outlives erasure as evidence.
            """CREATE TABLE consents (
                consent_id TEXT PRIMARY KEY,
                subject_id TEXT NOT NULL,
                kind TEXT NOT NULL,
                purpose TEXT NOT NULL,
                state TEXT NOT NULL,
                granted_at REAL,
                method TEXT NOT NULL,
                notice_version TEXT NOT NULL,
                actor TEXT NOT NULL,
                evidence_digest TEXT NOT NULL,
                expires_at REAL,
                guardian_id TEXT,
                guardian_relationship TEXT,
                guardian_evidence_digest TEXT,
                changed_at REAL NOT NULL
            )""",
            "CREATE INDEX consents_by_subject ON consents(subject_id, purpose)",
            """CREATE TABLE outbox (
                seq INTEGER PRIMARY KEY AUTOINCREMENT,
                event_id TEXT NOT NULL UNIQUE,
                topic TEXT NOT NULL,
                klass TEXT NOT NULL,
                payload BLOB NOT NULL,
                created_at REAL NOT NULL,
                delivered_at REAL
            )""",
            "CREATE INDEX outbox_pending ON outbox(seq) WHERE delivered_at IS NULL",
            "CREATE INDEX outbox_pending_klass ON outbox(klass, seq) WHERE delivered_at IS NULL",
            "CREATE INDEX outbox_delivered ON outbox(delivered_at) WHERE delivered_at IS NOT NULL",
            """CREATE TABLE audit (
                seq INTEGER PRIMARY KEY,
                at REAL NOT NULL,
                actor TEXT NOT NULL,
                action TEXT NOT NULL,
                subject_id TEXT,
                detail TEXT NOT NULL,
                prev_hash TEXT NOT NULL,
                hash TEXT NOT NULL
            )""",
            """CREATE TABLE kv_state (
                key TEXT PRIMARY KEY,
                value TEXT NOT NULL,
                updated_at REAL NOT NULL
            )""",
        ),
    ),
    (
        2,
        (
            # Privacy rights state (typed access: storage/rights_state.py).
            # A restricted subject keeps its data but is never matched (GDPR Art. 18).
            """CREATE TABLE subject_restrictions (
                subject_id TEXT PRIMARY KEY,
                restricted_at REAL NOT NULL,
                actor TEXT NOT NULL,
                reason TEXT NOT NULL
            )""",
            # Legal holds: subject_id NULL = the whole device. Active while
            # released_at IS NULL and expires_at > now; lapsed_at is set once.
            """CREATE TABLE legal_holds (
                hold_id TEXT PRIMARY KEY,
                subject_id TEXT,
                reason TEXT NOT NULL,
                actor TEXT NOT NULL,
                set_at REAL NOT NULL,
                expires_at REAL NOT NULL,
                released_at REAL,
                lapsed_at REAL
            )""",
            "CREATE INDEX legal_holds_open ON legal_holds(expires_at) WHERE lapsed_at IS NULL",
            # Erasures a legal hold deferred; run when the hold lapses.
            """CREATE TABLE deferred_erasures (
                subject_id TEXT PRIMARY KEY,
                reason TEXT NOT NULL,
                actor TEXT NOT NULL,
                requested_at REAL NOT NULL
            )""",
            # Security incidents: stable id, kind, severity, the response taken.
            """CREATE TABLE incidents (
                incident_id TEXT PRIMARY KEY,
                at REAL NOT NULL,
                kind TEXT NOT NULL,
                severity TEXT NOT NULL,
                response TEXT NOT NULL,
                source TEXT NOT NULL,
                outcome TEXT NOT NULL
            )""",
        ),
    ),
    (
        3,
        (
            # Anti-passback: the last passage per subject (typed access: storage/passages.py).
            # Pseudonymous ids, a direction and a time only; rows older than the timeout are pruned.
            """CREATE TABLE passages (
                subject_id TEXT PRIMARY KEY,
                direction TEXT NOT NULL,
                at REAL NOT NULL
            )""",
        ),
    ),
    (
        4,
        (
            # Results of actuating commands by nonce (typed access: storage/command_results.py),
            # so a retry of the same signed command replays its result instead of actuating
            # again, also after a restart. No personal data: verb, code and the verb's result.
            """CREATE TABLE command_results (
                nonce TEXT PRIMARY KEY,
                verb TEXT NOT NULL,
                sig_digest TEXT NOT NULL,
                ok INTEGER NOT NULL,
                code TEXT NOT NULL,
                message TEXT NOT NULL,
                result TEXT NOT NULL,
                at REAL NOT NULL
            )""",
            "CREATE INDEX command_results_at ON command_results(at)",
        ),
    ),
    (
        5,
        (
            # The privacy policy's records (it decides; storage owns the tables). IF NOT
            # EXISTS: a version-1 file may already hold them, from when the policy created
            # them itself at open.
            # Age evidence of a subject (birth date or age band): decides whether a
            # guardian's consent is needed. Deleted with the subject on erasure.
            """CREATE TABLE IF NOT EXISTS policy_age (
        subject_id TEXT PRIMARY KEY,
        birth_date TEXT,
        age_band TEXT,
        recorded_at REAL NOT NULL,
        actor TEXT NOT NULL,
        CHECK (birth_date IS NOT NULL OR age_band IS NOT NULL)
    )""",
            # Decision snapshots (only when turned on): AES-GCM sealed under the device
            # snapshot key, kept at most privacy.retention.snapshot_hours.
            """CREATE TABLE IF NOT EXISTS policy_snapshots (
        snapshot_id TEXT PRIMARY KEY,
        decision_id TEXT NOT NULL,
        subject_id TEXT,
        created_at REAL NOT NULL,
        ciphertext BLOB NOT NULL
    )""",
            "CREATE INDEX IF NOT EXISTS policy_snapshots_by_age ON policy_snapshots(created_at)",
            # The retention purge of access events by age.
            "CREATE INDEX IF NOT EXISTS outbox_by_klass_created ON outbox(klass, created_at)",
        ),
    ),
    (
        6,
        (
            # Which image a template was enrolled from (typed access: storage/image_sources.py):
            # HMAC-SHA256 of the decoded pixels under the device image-digest key (sealed in
            # the vault), never a plain hash. On the template row, so every path that deletes
            # a template (erasure, withdrawal, retention, teardown) deletes its digest too.
            # Unique: one image enrols one template of one subject (resumable bulk enrolment).
            "ALTER TABLE templates ADD COLUMN source_digest BLOB",
            "CREATE UNIQUE INDEX templates_by_source ON templates(source_digest) "
            "WHERE source_digest IS NOT NULL",
        ),
    ),
)

SCHEMA_VERSION = MIGRATIONS[-1][0]

# The key vault: a separate SQLite file (attached as ``vault``) holding only
# wrapped DEKs and KEK facts. Keeping keys out of the main file is what makes
# crypto-shredding work for copies and backups of the main file: once a key
# row is deleted from the vault, no copy of the main file decrypts.
VAULT_MIGRATIONS: tuple[tuple[int, tuple[str, ...]], ...] = (
    (
        1,
        (
            # KEK facts: active KEK id (the KEK check value), rotation target,
            # wrap counter, scrypt salts.
            """CREATE TABLE vault.key_meta (
                name TEXT PRIMARY KEY,
                value TEXT NOT NULL
            )""",
            # No foreign key: SQLite cannot reference another file. Orphans are
            # reconciled at start-up (see Store).
            """CREATE TABLE vault.subject_keys (
                subject_id TEXT PRIMARY KEY,
                kek_id TEXT NOT NULL,
                wrapped BLOB NOT NULL,
                uses INTEGER NOT NULL DEFAULT 0,
                created_at REAL NOT NULL
            )""",
            "CREATE INDEX vault.subject_keys_by_kek ON subject_keys(kek_id)",
        ),
    ),
)

VAULT_SCHEMA_VERSION = VAULT_MIGRATIONS[-1][0]

# The fleet licence service's seat table: a separate SQLite file on the service host
# (typed access: storage/seats.py). IF NOT EXISTS: files from before this registry hold
# the same table at user_version 0.
SEAT_MIGRATIONS: tuple[tuple[int, tuple[str, ...]], ...] = (
    (
        1,
        (
            """CREATE TABLE IF NOT EXISTS seats (
                fingerprint TEXT PRIMARY KEY,
                state TEXT NOT NULL CHECK (state IN ('active', 'revoked')),
                activated_at REAL NOT NULL,
                lease_expires REAL NOT NULL,
                updated_at REAL NOT NULL,
                extended_until REAL NOT NULL DEFAULT 0
            )""",
        ),
    ),
)

SEAT_SCHEMA_VERSION = SEAT_MIGRATIONS[-1][0]
