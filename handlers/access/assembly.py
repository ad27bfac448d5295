"""Factory: the remote-open path (component ``access.remote_open``).

Built after the door, the store and recognition (whose anti-passback state,
component ``access.passback``, it shares), so a signed ``open`` is authorised by
the same :class:`Authoriser` rules as a face and audited in the hash chain.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .authoriser import Authoriser, store_lookup
from .passback import AntiPassback
from .remote import DoorActuator, RemoteOpen

if TYPE_CHECKING:
    from ...runtime.assembly import AssemblyContext, Parts


def build(ctx: AssemblyContext, parts: Parts) -> None:
    """Add ``access.remote_open`` when the device has a door controller."""
    door = parts.components.get("door")
    if door is None or not hasattr(door, "locked_down"):
        return
    store = parts.components.get("store")
    section = ctx.config.access
    authoriser: Authoriser | None = None
    if section.enabled and store is not None:
        passback = parts.components.get("access.passback")
        authoriser = Authoriser(
            section,
            store_lookup(store),
            passback=passback if isinstance(passback, AntiPassback) else None,
            bus=ctx.bus,
        )
    actuator: DoorActuator = door  # type: ignore[assignment]  # checked above: the DoorController
    remote = RemoteOpen(actuator, ctx.bus, ctx.clock, authoriser=authoriser, store=store)
    parts.components["access.remote_open"] = remote
    ctx.health.register("access.remote_open", lambda: dict(remote.counters))
