"""Door control: the lock relay, the door contact and the request-to-exit button.

Public surface: :class:`DoorController` (a Service and a SafeOutput) and the
:class:`DoorError` tree.
"""

from __future__ import annotations

from .controller import DoorController
from .errors import DoorError, DoorLockedDownError, DoorNoRelayError, DoorNotRunningError
from .fire import FireState

__all__ = [
    "DoorController",
    "DoorError",
    "DoorLockedDownError",
    "DoorNoRelayError",
    "DoorNotRunningError",
    "FireState",
]
