"""Config section of the privacy policy (owned by policy/)."""

from __future__ import annotations

from dataclasses import dataclass

from ._fields import setting


@dataclass(frozen=True)
class PrivacySection:
    """Consent and retention rules."""

    minor_age: int = setting(
        14, doc="Below this age a guardian's consent is required (PIPL Art. 31).", ge=1, le=21
    )
