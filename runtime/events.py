"""Typed events shared across subsystems.

Events are frozen, keyword-only dataclasses. Each event class declares how a
full subscriber queue treats it (:class:`Overflow`): camera frames are
latest-wins, telemetry may be dropped oldest-first, and access, security and
privacy events are never dropped silently.

Subsystem-private events live in their own package; the ones here cross
package boundaries (recognition -> door -> MQTT link -> storage outbox).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt


class Overflow(enum.Enum):
    """What a subscriber's full queue does with a new event."""

    LATEST_WINS = "latest_wins"
    """Drop the oldest queued event; counted as a drop (camera frames, state, best-effort data)."""
    NEVER_DROP = "never_drop"
    """The event is not delivered; this is logged as an error and counted."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Event:
    """Base of every bus event. ``at`` is wall-clock POSIX seconds from the injected clock."""

    overflow: ClassVar[Overflow] = Overflow.LATEST_WINS
    at: float


class Decision(enum.StrEnum):
    """Outcome of identifying a face (identity only: authorisation lives elsewhere)."""

    GRANTED = "granted"
    DENIED = "denied"
    UNKNOWN = "unknown"
    UNDECIDED = "undecided"


@dataclass(frozen=True, kw_only=True, slots=True)
class StageResult:
    """Outcome of one quality or liveness check: ``passed`` and a stable reason code."""

    name: str
    passed: bool
    reason: str
    value: float | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class AccessDecision(Event):
    """The self-explaining result of identifying one tracked face.

    It never carries an image, an embedding or a name: ``subject_id`` is the
    pseudonymous id from the gallery.
    """

    overflow: ClassVar[Overflow] = Overflow.NEVER_DROP
    event_id: str
    decision: Decision
    reason: str
    subject_id: str | None
    score: float | None
    runner_up: float | None
    margin: float | None
    threshold: float
    quality: tuple[StageResult, ...] = ()
    liveness: tuple[StageResult, ...] = ()
    model_id: str = ""
    gallery_size: int = 0
    latency_ms: tuple[tuple[str, float], ...] = ()
    frames: int = 0
    track_id: int = 0
    """Which tracked face this decides (per-process counter; not an identity)."""
    decision_ms: float = 0.0
    """Time from the track's first frame to this decision."""
    schedule: str | None = None
    """The access schedule that refused it (reason ``outside_schedule``), else None."""
    at_door: bool = True
    """The tracked face was the one the gate rule selects (issue 16). A bystander's
    decision (False) is reported, never acted on: no relay, no anti-passback, no match record."""


class SecurityKind(enum.StrEnum):
    """Incidents an operator must see."""

    TAMPER = "tamper"
    DECRYPT_FAILURE = "decrypt_failure"
    INTEGRITY_FAILURE = "integrity_failure"
    LICENCE_TAMPER = "licence_tamper"
    CLOCK_ROLLBACK = "clock_rollback"
    COMMAND_REJECTED = "command_rejected"
    DOOR_FORCED = "door_forced"
    MODEL_REJECTED = "model_rejected"
    BUS_OVERFLOW = "bus_overflow"
    FIRE_RELEASE = "fire_release"
    ANTI_PASSBACK = "anti_passback"
    PUBLISH_REFUSED = "publish_refused"


@dataclass(frozen=True, kw_only=True, slots=True)
class SecurityEvent(Event):
    """A security incident. ``detail`` is operator-facing text with no personal data."""

    overflow: ClassVar[Overflow] = Overflow.NEVER_DROP
    kind: SecurityKind
    detail: str
    subject_id: str | None = None
    source: str = ""


class PrivacyKind(enum.StrEnum):
    """Privacy-relevant facts reported as counts and ids only."""

    ERASURE = "erasure"
    CONSENT_CHANGED = "consent_changed"
    RETENTION_SWEEP = "retention_sweep"
    EXPORT = "export"
    RECTIFICATION = "rectification"
    TEARDOWN = "teardown"
    RESTRICTION = "restriction"
    LEGAL_HOLD = "legal_hold"
    RECONSENT = "reconsent"


@dataclass(frozen=True, kw_only=True, slots=True)
class PrivacyEvent(Event):
    """A privacy receipt: ids and counts, never biometric data or names."""

    overflow: ClassVar[Overflow] = Overflow.NEVER_DROP
    kind: PrivacyKind
    subject_id: str | None = None
    counts: tuple[tuple[str, int], ...] = ()
    receipt_id: str = ""
    detail: str = ""


class DoorKind(enum.StrEnum):
    """Door and relay facts."""

    OPENED = "opened"
    CLOSED = "closed"
    HELD_OPEN = "held_open"
    FORCED = "forced"
    EXIT_REQUEST = "exit_request"
    FIRE_RELEASE = "fire_release"
    UNLOCKED = "unlocked"
    LOCKED = "locked"
    LOCKDOWN = "lockdown"
    RELEASED = "released"


@dataclass(frozen=True, kw_only=True, slots=True)
class DoorEvent(Event):
    """Something happened at the door; ``cause`` says why (decision id, command, sensor)."""

    overflow: ClassVar[Overflow] = Overflow.NEVER_DROP
    kind: DoorKind
    cause: str = ""


@dataclass(frozen=True, kw_only=True, slots=True)
class ComponentStateChanged(Event):
    """A driver or connection changed state (published once per change, not per retry)."""

    overflow: ClassVar[Overflow] = Overflow.LATEST_WINS
    component: str
    state: str
    detail: str = ""


@dataclass(frozen=True, kw_only=True, slots=True, eq=False)
class FrameCaptured(Event):
    """One camera frame (BGR uint8, HxWx3), with the paired IR frame when an IR camera exists.

    Latest-wins: a slow consumer always gets the newest frame, never a backlog.
    Frames are never persisted and never leave the process.
    """

    overflow: ClassVar[Overflow] = Overflow.LATEST_WINS
    image: npt.NDArray[np.uint8]
    seq: int
    source: str
    monotonic: float
    ir: npt.NDArray[np.uint8] | None = None
    meta: tuple[tuple[str, Any], ...] = ()
