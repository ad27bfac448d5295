"""Typed errors of the command layer; each carries a stable reply ``code``."""

from __future__ import annotations

from ...runtime.errors import FacegateError


class CommandError(FacegateError):
    """A command was not carried out. ``code`` is the stable error code in the reply."""

    code = "failed"
    refusal = False
    """True when the command was refused before running (also a COMMAND_REJECTED security event)."""

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class CommandRefused(CommandError):
    """Refused before parsing or validation succeeded: size, encoding, JSON, schema."""

    code = "invalid"
    refusal = True


class CommandUnauthorised(CommandRefused):
    """Authentication failed: unsigned, unknown operator, forged signature, wrong device."""

    code = "unauthorised"


class CommandReplay(CommandUnauthorised):
    """Outside the time window or a nonce already seen."""

    code = "replay"


class VerbNotAvailable(CommandError):
    """The verb is valid but the part that implements it is not in this build."""

    code = "not_available"


class VerbFailed(CommandError):
    """The verb ran and failed (for example the door is in lockdown)."""

    code = "failed"
