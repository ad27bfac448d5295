"""Errors of door control."""

from __future__ import annotations

from ...runtime.errors import FacegateError


class DoorError(FacegateError):
    """Base of door control errors."""


class DoorNotRunningError(DoorError):
    """The door controller is not running (device starting, stopping or crashed)."""


class DoorLockedDownError(DoorError):
    """The door is in lockdown: grants and remote opens are refused until release()."""


class DoorNoRelayError(DoorError):
    """gpio.relay = 'none' (gate-controller mode): this device drives no lock relay."""
