"""The policy subsystem's exception tree."""

from __future__ import annotations

from ..runtime.errors import FacegateError


class PolicyError(FacegateError):
    """A privacy rule refused an operation."""


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
