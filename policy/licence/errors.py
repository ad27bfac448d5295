"""The licence subsystem's exception tree."""

from __future__ import annotations

from ...runtime.errors import CodedError, FacegateError


class LicenceError(FacegateError):
    """Root of licence errors."""


class LicenceFormatError(LicenceError):
    """The bytes are not a licence document (bad JSON, missing or mistyped field)."""


class LicenceRefused(LicenceError):
    """A licence cannot be used here; ``state`` is the licence state it would give."""

    def __init__(self, state: str, detail: str) -> None:
        super().__init__(f"licence refused ({state}): {detail}")
        self.state = state
        self.detail = detail


class FingerprintError(LicenceError):
    """No device identifier could be read for a kiosk fingerprint."""


class LicenceRequired(LicenceError, CodedError):
    """An operation needs a usable licence (or a feature limit was reached); ``code`` is the reply code."""

    def __init__(self, message: str, *, code: str) -> None:
        CodedError.__init__(self, message, code=code)


class LicenceNotInstalled(LicenceError, CodedError):
    """``licence/install`` refused a licence; ``code`` is the state it would give."""

    def __init__(self, message: str, *, code: str) -> None:
        CodedError.__init__(self, message, code=code)


class SeatServiceError(LicenceError):
    """The seat service's pool licence or seat table is unusable."""
