"""Device wiring of the store: opened as a resource before any service starts.

Registers component ``store`` (:class:`~facegate.storage.store.Store`). Integrity
failures and a wrong KEK make the device refuse to start with a clear error;
``repair`` comes from ``facegate run --repair``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .store import Store

if TYPE_CHECKING:
    from ..runtime.assembly import AssemblyContext, Parts


def build(ctx: AssemblyContext, parts: Parts) -> None:
    """Add the store as a resource and component ``store`` (unless storage is off)."""
    if not ctx.config.storage.enabled:
        return
    store = Store.from_config(
        ctx.config.storage, clock=ctx.clock, publish=ctx.bus.publish, repair=ctx.repair
    )
    parts.resources.append(store)
    parts.components["store"] = store
