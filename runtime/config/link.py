"""Config section of the MQTT command layer and integrations (owned by the MQTT link)."""

from __future__ import annotations

from dataclasses import dataclass

from ._fields import setting


@dataclass(frozen=True)
class EventsSection:
    """What event payloads may contain."""

    include_names: bool = setting(
        False, doc="Put display names into event/access payloads (off: pseudonymous ids only)."
    )
