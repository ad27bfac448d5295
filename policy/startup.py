"""Start-up permission check of the whole gallery as set operations.

:func:`unpermitted_subjects` gives exactly the subjects that
:meth:`ConsentRegistry.check_enrolment` would refuse, for the whole gallery
in one storage read (:func:`facegate.storage.permits.permit_candidates`)
plus an exact minority decision on the few candidate rows.
"""

from __future__ import annotations

from datetime import date

from ..runtime.config.privacy import PrivacySection
from ..storage import Store
from ..storage.permits import permit_candidates
from .consent import today
from .consent_model import AgeBand, is_minor

#: Why a subject is not permitted (the retention sweep's ``erased_<reason>`` counts), in the
#: order :meth:`ConsentRegistry.check_enrolment` checks them.
NO_ACTIVE_CONSENT = "no_active_consent"
NO_AGE_RECORD = "no_age_record"
MINOR_WITHOUT_GUARDIAN = "minor_without_guardian"


async def unpermitted_reasons(store: Store, privacy: PrivacySection, purpose: str) -> list[tuple[str, str]]:
    """(subject id, reason) of every enrolled subject not permitted to match at wall time now,
    sorted by subject id; the reason is the first check that refuses it (see module doc)."""
    now = store.clock.wall()
    day = today(now)
    minor_age = privacy.minor_age
    minor_bands = [b.value for b in AgeBand if is_minor(birth=None, band=b, today=day, minor_age=minor_age)]
    # Born on or before 1 January of (year - minor_age - 1): at least minor_age today.
    born_after = date(day.year - minor_age - 1, 1, 1).isoformat()
    out: list[tuple[str, str]] = []
    for c in await permit_candidates(
        store.db, purpose=purpose, now=now, born_after=born_after, minor_bands=minor_bands
    ):
        if not c.biometric:
            out.append((c.subject_id, NO_ACTIVE_CONSENT))
        elif not c.has_age:
            out.append((c.subject_id, NO_AGE_RECORD))
        else:
            birth = None if c.birth_date is None else date.fromisoformat(c.birth_date)
            band = None if c.age_band is None else AgeBand(c.age_band)
            if not c.guardian and is_minor(birth=birth, band=band, today=day, minor_age=minor_age):
                out.append((c.subject_id, MINOR_WITHOUT_GUARDIAN))
    out.sort()
    return out


async def unpermitted_subjects(store: Store, privacy: PrivacySection, purpose: str) -> list[str]:
    """Enrolled subjects not permitted to match at wall time now (see module doc)."""
    return [sid for sid, _ in await unpermitted_reasons(store, privacy, purpose)]
