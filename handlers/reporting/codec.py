"""Typed bus events -> ``event/*`` JSON payloads (contract and schemas: docs/mqtt.md).

Every payload carries an ``event_id`` that consumers de-duplicate by: the
AccessDecision's own id, or a fresh UUIDv7 for door, security and privacy
events. The id is part of the stored payload, so a resend after a reconnect
or a restart repeats it byte for byte.

Privacy: payloads hold pseudonymous ids, scores, reason codes and counts.
They never hold images or embeddings. A display name is added to
``event/access`` only when ``events.include_names`` is on AND a name resolver
is given; free-text fields pass through the log redaction (secrets masked).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ...runtime.clock import utc_iso
from ...runtime.events import AccessDecision, DoorEvent, Event, PrivacyEvent, SecurityEvent, StageResult
from ...runtime.logs import redact
from ...runtime.mqtt.payloads import encode
from ...storage.outbox import EventClass
from ...storage.uuid7 import uuid7_str

ACCESS = "event/access"
DOOR = "event/door"
SECURITY = "event/security"
PRIVACY = "event/privacy"

EVENT_TYPES: tuple[type[Event], ...] = (AccessDecision, DoorEvent, SecurityEvent, PrivacyEvent)
"""The bus events the link makes durable."""

NameResolver = Callable[[str], str | None]


@dataclass(frozen=True, slots=True)
class Encoded:
    """One event ready for the outbox: topic suffix, delivery class, id and JSON body."""

    suffix: str
    klass: EventClass
    event_id: str
    payload: bytes


def _stage(s: StageResult) -> dict[str, Any]:
    return {"name": s.name, "passed": s.passed, "reason": s.reason, "value": s.value}


def _text(value: str) -> str:
    # Masks registered secrets that might have slipped into operator-facing text.
    masked = redact(None, "", {"text": value})["text"]
    return str(masked)


class EventCodec:
    """Encodes events of :data:`EVENT_TYPES` for one device."""

    def __init__(
        self, device_id: str, *, include_names: bool = False, names: NameResolver | None = None
    ) -> None:
        self.device_id = device_id
        self._names = names if include_names else None

    def encode(self, event: Event) -> Encoded:
        """Encode one event. Raises TypeError for an event type the link does not carry."""
        if isinstance(event, AccessDecision):
            return self._access(event)
        base: dict[str, Any] = {"event_id": uuid7_str(), "at": utc_iso(event.at), "device_id": self.device_id}
        if isinstance(event, DoorEvent):
            body = base | {"kind": event.kind.value, "cause": _text(event.cause)}
            return Encoded(DOOR, EventClass.DOOR, str(base["event_id"]), encode(body))
        if isinstance(event, SecurityEvent):
            body = base | {
                "kind": event.kind.value,
                "detail": _text(event.detail),
                "source": event.source,
                "subject_id": event.subject_id,
            }
            return Encoded(SECURITY, EventClass.SECURITY, str(base["event_id"]), encode(body))
        if isinstance(event, PrivacyEvent):
            body = base | {
                "kind": event.kind.value,
                "subject_id": event.subject_id,
                "counts": {k: int(v) for k, v in event.counts},
                "receipt_id": event.receipt_id,
                "detail": _text(event.detail),
            }
            return Encoded(PRIVACY, EventClass.PRIVACY, str(base["event_id"]), encode(body))
        raise TypeError(f"the MQTT link does not publish {type(event).__name__}")

    def _access(self, ev: AccessDecision) -> Encoded:
        body: dict[str, Any] = {
            "event_id": ev.event_id,
            "at": utc_iso(ev.at),
            "device_id": self.device_id,
            "decision": ev.decision.value,
            "reason": ev.reason,
            "subject_id": ev.subject_id,
            "score": ev.score,
            "runner_up": ev.runner_up,
            "margin": ev.margin,
            "threshold": ev.threshold,
            "quality": [_stage(s) for s in ev.quality],
            "liveness": [_stage(s) for s in ev.liveness],
            "model_id": ev.model_id,
            "gallery_size": ev.gallery_size,
            "latency_ms": {k: v for k, v in ev.latency_ms},
            "decision_ms": ev.decision_ms,
            "frame_count": ev.frames,
            "track_id": ev.track_id,
        }
        if ev.schedule is not None:  # DENIED outside_schedule names the schedule
            body["schedule"] = ev.schedule
        if not ev.at_door:  # a bystander's decision (issue 16); absent = at the door
            body["at_door"] = False
        if self._names is not None and ev.subject_id is not None:
            name = self._names(ev.subject_id)
            if name is not None:  # a subject without a (readable) display name: no field
                body["name"] = name
        return Encoded(ACCESS, EventClass.ACCESS, ev.event_id, encode(body))


def decode(payload: bytes) -> Mapping[str, Any]:
    """Parse an event payload (consumers and tests)."""
    data = json.loads(payload)
    if not isinstance(data, dict):
        raise TypeError("an event payload is a JSON object")
    return data
