"""Clock-rollback detection: the highest wall time seen, sealed in the encrypted store.

The high-water mark is sealed by storage (:class:`~facegate.storage.sealed_kv.SealedKv`,
AES-GCM) under a device secret kept KEK-wrapped in the key vault
(:mod:`facegate.policy.device_keys`), so neither reading nor editing the database moves it. An
unreadable mark (edited ciphertext) is treated as tampering: the guard keeps the in-memory
mark and reports it, and the next write replaces it. This module decides; storage seals.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from ...storage.errors import SealedValueError
from ...storage.sealed_kv import SealedKv

if TYPE_CHECKING:
    from ...storage import Store

KV_KEY = "licence.clock_hwm"
SECRET = "licence.clock"  # noqa: S105  # the vault name of a secret, not a secret
_AAD = b"facegate/licence-clock/v1"


class ClockGuard:
    """Tracks the highest wall time seen; ``behind(now)`` says how far the clock went back."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._sealed: SealedKv | None = None
        self.high_water = 0.0
        self.unreadable = False

    async def load(self) -> float:
        from ..device_keys import device_secret  # noqa: PLC0415  # avoids a policy import cycle

        self._sealed = SealedKv(self._store.kv, await device_secret(self._store, SECRET), _AAD)
        try:
            raw = await self._sealed.get(KV_KEY)
            if raw is not None:
                (self.high_water,) = struct.unpack(">d", raw)
        except (SealedValueError, struct.error):
            self.unreadable = True
        return self.high_water

    async def observe(self, now: float) -> None:
        """Raise the mark to ``now`` (persisted) when the clock moved forward."""
        if self._sealed is None:
            raise RuntimeError("ClockGuard.load() first")
        if now <= self.high_water and not self.unreadable:
            return
        self.high_water = max(self.high_water, now)
        await self._sealed.set(KV_KEY, struct.pack(">d", self.high_water))
        self.unreadable = False
