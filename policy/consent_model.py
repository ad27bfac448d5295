"""Consent records and their state machine (pure: no I/O).

States: ``pending`` -> ``active`` -> ``withdrawn`` | ``expired``. Every other
transition is refused. Biometric consent is its own record type, separate
from any other consent the operator may collect (PIPL Art. 29: separate
consent for sensitive personal information; GDPR Art. 9(2)(a): explicit).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from datetime import date

from .errors import InvalidTransitionError


class ConsentState(enum.StrEnum):
    """Lifecycle of one consent record."""

    PENDING = "pending"
    ACTIVE = "active"
    WITHDRAWN = "withdrawn"
    EXPIRED = "expired"


class ConsentKind(enum.StrEnum):
    """What the consent covers. Only BIOMETRIC (and GUARDIAN for minors) permits enrolment."""

    BIOMETRIC = "biometric"
    GUARDIAN = "guardian"
    OTHER = "other"


class ConsentMethod(enum.StrEnum):
    """How the consent was captured."""

    KIOSK = "kiosk"
    PAPER = "paper"
    APP = "app"
    API = "api"


_ALLOWED: dict[ConsentState, frozenset[ConsentState]] = {
    ConsentState.PENDING: frozenset({ConsentState.ACTIVE, ConsentState.WITHDRAWN}),
    ConsentState.ACTIVE: frozenset({ConsentState.WITHDRAWN, ConsentState.EXPIRED}),
    ConsentState.WITHDRAWN: frozenset(),
    ConsentState.EXPIRED: frozenset(),
}


@dataclass(frozen=True, kw_only=True)
class Guardian:
    """The guardian who consents for a minor."""

    guardian_id: str
    relationship: str
    evidence_digest: str


@dataclass(frozen=True, kw_only=True)
class ConsentRecord:
    """One consent, as stored (no biometric data; ids and digests only)."""

    consent_id: str
    subject_id: str
    kind: ConsentKind
    purpose: str
    state: ConsentState
    granted_at: float | None
    method: ConsentMethod
    notice_version: str
    actor: str
    evidence_digest: str
    expires_at: float | None = None
    guardian: Guardian | None = None
    changed_at: float = 0.0

    def is_active(self, now: float) -> bool:
        """Active and not past its expiry at wall time ``now``."""
        return self.state is ConsentState.ACTIVE and (
            self.expires_at is None or now < self.expires_at
        )

    def transition(self, to: ConsentState, *, at: float) -> ConsentRecord:
        """Return the record moved to ``to``; raise InvalidTransitionError if not allowed."""
        if to not in _ALLOWED[self.state]:
            raise InvalidTransitionError(
                f"consent {self.consent_id}: {self.state.value} -> {to.value} is not allowed"
            )
        granted = at if to is ConsentState.ACTIVE and self.granted_at is None else self.granted_at
        return replace(self, state=to, changed_at=at, granted_at=granted)


class AgeBand(enum.StrEnum):
    """Age bands for when a birth date is not recorded."""

    UNDER_14 = "under_14"
    FROM_14_TO_17 = "14_17"
    ADULT = "18_plus"


def age_on(birth: date, today: date) -> int:
    """Completed years of age on ``today``."""
    years = today.year - birth.year
    if (today.month, today.day) < (birth.month, birth.day):
        years -= 1
    return years


def is_minor(
    *, birth: date | None, band: AgeBand | None, today: date, minor_age: int
) -> bool:
    """True if the person is below ``minor_age`` (needs a guardian's consent).

    With neither a birth date nor an age band the person is treated as a minor:
    the safe default when age is unknown is to ask for a guardian.
    """
    if birth is not None:
        return age_on(birth, today) < minor_age
    if band is None:
        return True
    if band is AgeBand.UNDER_14:
        return True
    if band is AgeBand.FROM_14_TO_17:
        return minor_age > 14
    return minor_age > 18
