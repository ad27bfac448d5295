"""Config section of the privacy policy (owned by policy/).

Every retention default carries its reason in the field description; the
same text appears in docs/privacy.md and ``facegate config example``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ._fields import FieldError, setting

_DAY = 86_400.0
# PIPL Art. 47 / GDPR Art. 5(1)(e): keep no longer than the purpose needs. Three
# years is the outer bound the strictest regimes (e.g. BIPA) allow for biometric
# templates after the last interaction.
_OUTER_TEMPLATE_BOUND_DAYS = 3 * 365


@dataclass(frozen=True)
class RetentionSection:
    """How long each class of data is kept (days unless stated)."""

    template_idle_days: int = setting(
        365,
        doc="Templates expire after this many days without a successful match: a person who has "
        "not used the gate for a year no longer needs to be enrolled (outer legal bound 3 years).",
        ge=1,
    )
    access_event_days: int = setting(
        90,
        doc="Access events are kept 90 days: long enough to investigate an incident, short enough "
        "not to become a movement profile.",
        ge=1,
    )
    delivered_outbox_days: int = setting(
        7,
        doc="Delivered outbox rows are kept 7 days so a consumer can ask for a resend, then purged.",
        ge=0,
    )
    audit_days: int = setting(
        3 * 365,
        doc="Audit records (no biometric data) are kept 3 years to prove lawful processing.",
        ge=30,
    )
    snapshot_hours: float = setting(
        24.0,
        doc="Decision snapshots (if enabled) are encrypted like templates and kept at most 24 h.",
        gt=0,
        le=24,
    )
    sweep_interval_s: float = setting(
        3600.0, doc="Seconds between retention sweeps (one also runs at start-up).", gt=0
    )

    def check(self) -> None:
        if self.template_idle_days > _OUTER_TEMPLATE_BOUND_DAYS:
            raise FieldError(
                "template_idle_days",
                f"must be <= {_OUTER_TEMPLATE_BOUND_DAYS} (3 years, the outer legal bound)",
            )

    @property
    def template_idle_s(self) -> float:
        """Template idle limit in seconds."""
        return self.template_idle_days * _DAY


@dataclass(frozen=True)
class NoticePolicy:
    """What a privacy-notice version means for consents given under earlier notices."""

    require_reconsent: bool = setting(
        False,
        doc="A material change: consents given before this notice took effect on the device stop "
        "permitting matching after the grace period, until the person consents again.",
    )
    grace_days: int = setting(
        30,
        doc="Days after the notice takes effect during which older consents still permit matching.",
        ge=0,
        le=365,
    )


INCIDENT_KINDS = (
    "tamper",
    "enclosure_open",
    "decrypt_failure",
    "integrity_failure",
    "licence_tamper",
    "clock_rollback",
    "command_rejected",
    "door_forced",
    "model_rejected",
    "bus_overflow",
    "fire_release",
    "anti_passback",
    "publish_refused",
)
"""Security incident kinds (event/security kinds; ``enclosure_open`` is a tamper from the GPIO switch)."""


@dataclass(frozen=True)
class IncidentRule:
    """Severity and response of one security incident kind (see docs/incidents.md)."""

    severity: Literal["info", "warning", "critical"] = setting(
        "warning", doc="How urgent: 'info', 'warning' or 'critical' (published with the incident)."
    )
    response: Literal["notify", "lockdown", "shred_kek"] = setting(
        "notify",
        doc="'notify' only; 'lockdown' keeps the door locked until a signed release; 'shred_kek' "
        "destroys the key vault (crypto-shreds the whole gallery; enclosure_open only, for kiosks).",
    )


@dataclass(frozen=True)
class PrivacySection:
    """Consent, minors, snapshots and retention."""

    minor_age: int = setting(
        14,
        doc="Below this age a guardian's consent is required (PIPL Art. 31: under 14).",
        ge=1,
        le=21,
    )
    notice_version: str = setting(
        "1", doc="Version of the privacy notice currently shown to people who enrol."
    )
    decision_snapshots: bool = setting(
        False,
        doc="Keep an encrypted snapshot of the face crop per decision (off: raw frames are never "
        "persisted).",
    )
    retention: RetentionSection = setting(factory=RetentionSection, doc="Retention per class.")
    notices: dict[str, NoticePolicy] = setting(
        factory=dict,
        doc="Per notice version policy, e.g. [privacy.notices.\"2\"] require_reconsent = true "
        "(only the entry of the current notice_version applies).",
    )
    incidents: dict[str, IncidentRule] = setting(
        factory=dict,
        doc="Per incident kind overrides of the built-in severity/response table, e.g. "
        "[privacy.incidents.enclosure_open] response = \"shred_kek\" on a kiosk.",
    )

    def check(self) -> None:
        for kind, rule in self.incidents.items():
            if kind not in INCIDENT_KINDS:
                known = ", ".join(INCIDENT_KINDS)
                raise FieldError(f"incidents.{kind}", f"unknown incident kind; one of {known}")
            if rule.response == "lockdown" and kind == "fire_release":
                raise FieldError(f"incidents.{kind}.response", "a fire release must never lock the door down")
            if rule.response == "shred_kek" and kind != "enclosure_open":
                raise FieldError(f"incidents.{kind}.response", "shred_kek is only allowed for enclosure_open")
