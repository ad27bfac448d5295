"""Collection minimisation: the complete list of personal data the device may hold.

Nothing outside ``policy/`` decides what is collected. Every subject
attribute must be one of :data:`ATTRIBUTES` (each with the reason it is
needed); anything else is refused before it is written. The table below is
rendered into docs/privacy.md.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from .errors import ConsentInputError

AttrValue = str | int | float | bool | None
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$")

DATA_ITEMS: tuple[tuple[str, str, str], ...] = (
    (
        "face template",
        "1:N identification at the gate",
        "until erasure, or template_idle_days without a match",
    ),
    ("display name (optional)", "shown to the operator when granting/denying", "with the template"),
    ("attributes (allow-listed)", "link to the operator's access record", "with the template"),
    ("birth date or age band", "decide whether a guardian's consent is required", "with the template"),
    ("consent records", "prove lawful processing", "audit_days after withdrawal/expiry"),
    ("access events (pseudonymous id)", "investigate incidents", "access_event_days"),
    ("audit log (ids, counts)", "prove lawful processing", "audit_days"),
    (
        "decision snapshots (off by default)",
        "operator review of a disputed decision",
        "snapshot_hours (<= 24 h)",
    ),
)
"""(item, why, how long) for every class of personal data."""

ATTRIBUTES: Mapping[str, str] = {
    "employee_no": "links the subject to the operator's HR or member record",
    "card_id": "links the subject to an access card for two-factor doors",
    "department": "selects the door group the subject may use",
    "role": "selects the access level",
    "valid_until": "end date (ISO 8601) of the subject's access rights",
    "valid_from": "start date (ISO 8601) of the subject's access rights (visitor passes)",
    "access_group": "selects the weekly schedule of the subject's access rights",
}
"""Allowed attribute keys and why each may be collected."""

MAX_TEXT = 128


def check_subject_id(value: str, what: str = "subject id") -> str:
    """Pseudonymous ids: 1-128 of ``A-Z a-z 0-9 . _ : @ -`` (the storage id rule)."""
    if not isinstance(value, str) or not _ID.match(value):
        raise ConsentInputError(f"invalid {what}: use 1-128 characters from A-Z a-z 0-9 . _ : @ -")
    return value


def check_display_name(name: str | None) -> str | None:
    """A display name is optional, 1-128 printable characters."""
    if name is None:
        return None
    if not isinstance(name, str) or not 1 <= len(name) <= MAX_TEXT or not name.isprintable():
        raise ConsentInputError(f"display name must be 1-{MAX_TEXT} printable characters")
    return name


def check_attributes(attributes: Mapping[str, AttrValue] | None) -> dict[str, AttrValue]:
    """Refuse any attribute that is not on the allow-list, or not a short scalar."""
    out: dict[str, AttrValue] = {}
    for key, value in (attributes or {}).items():
        if key not in ATTRIBUTES:
            raise ConsentInputError(
                f"attribute {key!r} is not collected by this device (allowed: {', '.join(ATTRIBUTES)})"
            )
        if isinstance(value, str):
            if len(value) > MAX_TEXT or not value.isprintable():
                raise ConsentInputError(f"attribute {key!r}: text must be <= {MAX_TEXT} printable characters")
        elif not (value is None or isinstance(value, bool | int | float)):
            raise ConsentInputError(f"attribute {key!r}: only text, numbers or booleans")
        out[key] = value
    return out
