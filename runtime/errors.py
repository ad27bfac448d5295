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


class BusOverflowError(RuntimeCoreError):
    """A never-drop subscriber's queue was full; the event was not delivered to it."""


class ShutdownTimeoutError(RuntimeCoreError):
    """The graceful shutdown path ran out of time and the forced path was taken."""
