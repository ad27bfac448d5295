"""Root of facegate's exception trees.

Every subsystem derives its own small tree from :class:`FacegateError`, so a
caller can catch one subsystem's failures without catching programming errors.
``asyncio.CancelledError`` is never wrapped in any of these.
"""

from __future__ import annotations


class FacegateError(Exception):
    """Base class of every error facegate raises on purpose."""


class RuntimeCoreError(FacegateError):
    """Errors of the runtime core (bus, supervisor, device lifecycle)."""


class ShutdownTimeoutError(RuntimeCoreError):
    """The graceful shutdown path ran out of time and the forced path was taken."""


class CodedError(FacegateError):
    """A refusal or failure with a stable machine-readable ``code``, meant for an operator.

    Subsystems raise their own subclasses (the policy's, the key rotation's);
    the command layer maps them to reply codes without knowing the subsystem:
    ``bad_input`` errors are refusals of the request (``invalid`` class), the
    others failures of the verb.
    """

    code: str = "failed"
    bad_input: bool = False

    def __init__(self, message: str, *, code: str | None = None, bad_input: bool | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code
        if bad_input is not None:
            self.bad_input = bad_input
