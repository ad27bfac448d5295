"""Set-based permission check of the whole gallery at start-up (one query, no per-subject trips).

At start-up every enrolled subject must still be permitted to match (an
active, unexpired biometric consent for the purpose; an age record; and, for
a minor, an active guardian consent naming the guardian). Asking that one
subject at a time costs a round trip each (0.6-1.0 ms: 10-17 minutes for 1M
people before the device serves). :func:`permit_candidates` answers it for
the whole gallery in one read: it returns only the subjects that *may* fail
(no biometric consent, no age record, or no guardian consent while the age
evidence could make them a minor); the caller decides minority exactly on
those few rows (:func:`facegate.policy.startup.unpermitted_subjects`).

The ``consents`` table is storage's; ``policy_age`` is created by the policy
before this is called.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .db import Database

_SQL = """
SELECT s.subject_id,
       EXISTS (SELECT 1 FROM consents c WHERE c.subject_id = s.subject_id AND c.purpose = ?1
               AND c.kind = 'biometric' AND c.state = 'active'
               AND (c.expires_at IS NULL OR c.expires_at > ?2)) AS bio,
       EXISTS (SELECT 1 FROM consents c WHERE c.subject_id = s.subject_id AND c.purpose = ?1
               AND c.kind = 'guardian' AND c.state = 'active' AND c.guardian_id IS NOT NULL
               AND (c.expires_at IS NULL OR c.expires_at > ?2)) AS guard,
       a.subject_id IS NOT NULL AS has_age, a.birth_date, a.age_band
FROM subjects s LEFT JOIN policy_age a ON a.subject_id = s.subject_id
WHERE NOT bio OR a.subject_id IS NULL
   OR (NOT guard AND ((a.birth_date IS NOT NULL AND a.birth_date > ?3)
                      OR (a.birth_date IS NULL AND (a.age_band IS NULL OR a.age_band IN ({bands})))))
"""


@dataclass(frozen=True, slots=True)
class PermitCandidate:
    """An enrolled subject that may no longer be permitted (see module doc)."""

    subject_id: str
    biometric: bool
    guardian: bool
    has_age: bool
    birth_date: str | None
    age_band: str | None


async def permit_candidates(
    db: Database, *, purpose: str, now: float, born_after: str, minor_bands: Sequence[str]
) -> list[PermitCandidate]:
    """Enrolled subjects lacking consent or age evidence, or possibly unguarded minors.

    ``born_after``: ISO date; anyone born on or before it is an adult today.
    ``minor_bands``: the age bands that make a subject a minor today.
    Consents count when active and ``expires_at > now`` (as ConsentRecord.is_active).
    """
    bands = ",".join(f"?{i + 4}" for i in range(len(minor_bands))) or "NULL"
    rows = await db.fetchall(
        _SQL.format(bands=bands),  # only numbered '?' placeholders are interpolated
        (purpose, now, born_after, *minor_bands),
    )
    return [
        PermitCandidate(
            str(sid), bool(bio), bool(guard), bool(has_age),
            None if birth is None else str(birth), None if band is None else str(band),
        )
        for sid, bio, guard, has_age, birth, band in rows
    ]


_ACTIVE_BIO = """FROM consents c WHERE c.subject_id = s.subject_id AND c.purpose = ?1
               AND c.kind = 'biometric' AND c.state = 'active'
               AND (c.expires_at IS NULL OR c.expires_at > ?2)"""

_STALE_SQL = f"""
SELECT s.subject_id FROM subjects s
WHERE EXISTS (SELECT 1 {_ACTIVE_BIO})
  AND NOT EXISTS (SELECT 1 {_ACTIVE_BIO} AND (c.notice_version = ?3 OR c.granted_at >= ?4))
ORDER BY s.subject_id
"""  # noqa: S608  # constant fragments only; every value is a bound parameter


async def stale_consent_subjects(
    db: Database, *, purpose: str, now: float, notice_version: str, effective: float
) -> list[str]:
    """Enrolled subjects with an active biometric consent for ``purpose``, none of which was
    given under ``notice_version`` or at/after ``effective`` (re-consent due), in one read.

    The same rule as ``policy.reconsent.is_stale`` for one subject, for the whole gallery.
    """
    rows = await db.fetchall(_STALE_SQL, (purpose, now, notice_version, effective))
    return [str(r[0]) for r in rows]
