"""Small values sealed in ``kv_state``: AES-256-GCM under a device secret, bound to an AAD.

The caller (policy) decides what a value means and which device secret and AAD protect it;
storage seals, stores, reads and opens it. The value is kept as hex of ``nonce || ciphertext``
(:func:`~facegate.storage.crypto.seal`), so neither reading nor editing the database file
reveals or moves it: an edited value fails with :class:`~facegate.storage.errors.SealedValueError`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .crypto import AuthenticationFailed, open_sealed, seal
from .errors import SealedValueError

if TYPE_CHECKING:
    from .store import KvState


class SealedKv:
    """One sealing key and AAD over the store's key-value state."""

    def __init__(self, kv: KvState, secret: bytes, aad: bytes) -> None:
        self._kv = kv
        self._aead = AESGCM(secret)
        self._aad = aad

    async def get(self, key: str) -> bytes | None:
        """The opened value of ``key`` (None: not set); SealedValueError if it does not open."""
        text = await self._kv.get(key)
        if text is None:
            return None
        try:
            return open_sealed(self._aead, bytes.fromhex(text), self._aad)
        except (AuthenticationFailed, ValueError):
            raise SealedValueError(f"the sealed value {key!r} failed authentication") from None

    async def set(self, key: str, value: bytes) -> None:
        """Seal ``value`` under a fresh nonce and store it as ``key``."""
        await self._kv.set(key, seal(self._aead, value, self._aad).hex())
