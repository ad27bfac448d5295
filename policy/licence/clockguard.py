"""Clock-rollback detection: the highest wall time seen, sealed in the encrypted store.

The high-water mark is AES-GCM sealed under a device secret kept KEK-wrapped in the key vault
(:mod:`facegate.policy.device_keys`), so neither reading nor editing the database moves it. An
unreadable mark (edited ciphertext) is treated as tampering: the guard keeps the in-memory
mark and reports it, and the next write replaces it.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ...storage.crypto import AuthenticationFailed, open_sealed, seal

if TYPE_CHECKING:
    from ...storage import Store

KV_KEY = "licence.clock_hwm"
SECRET = "licence.clock"  # noqa: S105  # the vault name of a secret, not a secret
_AAD = b"facegate/licence-clock/v1"


class ClockGuard:
    """Tracks the highest wall time seen; ``behind(now)`` says how far the clock went back."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._aead: AESGCM | None = None
        self.high_water = 0.0
        self.unreadable = False

    async def load(self) -> float:
        from ..device_keys import device_secret  # noqa: PLC0415  # avoids a policy import cycle

        self._aead = AESGCM(await device_secret(self._store, SECRET))
        text = await self._store.kv.get(KV_KEY)
        if text is not None:
            try:
                (self.high_water,) = struct.unpack(">d", open_sealed(self._aead, bytes.fromhex(text), _AAD))
            except (AuthenticationFailed, ValueError, struct.error):
                self.unreadable = True
        return self.high_water

    async def observe(self, now: float) -> None:
        """Raise the mark to ``now`` (persisted) when the clock moved forward."""
        if self._aead is None:
            raise RuntimeError("ClockGuard.load() first")
        if now <= self.high_water and not self.unreadable:
            return
        self.high_water = max(self.high_water, now)
        await self._store.kv.set(KV_KEY, seal(self._aead, struct.pack(">d", self.high_water), _AAD).hex())
        self.unreadable = False
