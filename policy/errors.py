"""The policy subsystem's exception tree."""

from __future__ import annotations

from ..runtime.errors import CodedError


class PolicyError(CodedError):
    """A privacy rule refused an operation. ``code`` is the stable reply code of a command."""


class ConsentRequiredError(PolicyError):
    """Enrolment (or another biometric operation) lacks the consent it needs.

    ``missing`` names what is missing, e.g. ``biometric:access_control`` or
    ``guardian:access_control``.
    """

    def __init__(self, subject_id: str, missing: str, detail: str) -> None:
        super().__init__(f"subject {subject_id}: missing {missing} consent: {detail}")
        self.subject_id = subject_id
        self.missing = missing


class InvalidTransitionError(PolicyError):
    """A consent state transition that the state machine does not allow."""


class ConsentInputError(PolicyError):
    """A consent, age or attribute request is malformed; nothing was written."""


class ConsentNotFoundError(PolicyError):
    """No consent record with that id."""


class SubjectUnknownError(PolicyError):
    """The subject is not enrolled (nothing to export, rectify or erase)."""


class DeviceKeyError(PolicyError):
    """The device signing/snapshot key cannot be created or unwrapped (KEK not held)."""


class ExportVerificationError(PolicyError):
    """An export bundle is malformed, signed by another key, or was modified."""


class SnapshotsDisabledError(PolicyError):
    """Decision snapshots are off in config: no image may be persisted."""


class DeviceDestroyedError(PolicyError):
    """The device was torn down (``facegate destroy``); it holds no keys or subjects."""


class PolicyActionError(PolicyError):
    """A rights verb (:mod:`.actions`) refused or failed; its message and ``code`` go in the reply."""


class SubjectRestrictedError(PolicyError):
    """The subject restricted processing: only storage, export and erasure are allowed."""


class HoldNotFoundError(PolicyError):
    """No open legal hold with that id."""
