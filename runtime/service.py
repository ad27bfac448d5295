"""The unit the Device supervises.

A :class:`Service` is a long-lived piece of the device (a driver, a handler,
the MQTT link, a periodic job). Its ``run()`` coroutine runs until cancelled.
If ``run()`` raises, the supervisor logs the crash once, waits a capped,
jittered backoff and calls ``run()`` again. A service that owns sub-tasks
opens its own ``asyncio.TaskGroup`` inside ``run()`` with named tasks.

``run()`` must let ``asyncio.CancelledError`` propagate unchanged: that is
how shutdown reaches it. Cleanup belongs in ``finally`` blocks and must be
quick; the device's graceful budget is shared by all services.
"""

from __future__ import annotations

import enum
from typing import Protocol, runtime_checkable


class ServiceState(enum.StrEnum):
    """Supervisor's view of a service."""

    STARTING = "starting"
    RUNNING = "running"
    BACKOFF = "backoff"
    STOPPING = "stopping"
    STOPPED = "stopped"
    FAILED = "failed"


@runtime_checkable
class Service(Protocol):
    """A supervised long-lived coroutine with a stable, unique name."""

    @property
    def name(self) -> str:
        """Task name, unique within the device (e.g. ``camera``, ``mqtt.link``)."""
        ...

    async def run(self) -> None:
        """Do the work until cancelled. Raising is a crash; the supervisor restarts it."""
        ...


@runtime_checkable
class SafeOutput(Protocol):
    """An actuator with a safe state (the lock relay). Called on every shutdown path."""

    def enter_safe_state(self) -> None:
        """Put the output in its configured safe state. Synchronous and idempotent."""
        ...
