"""The policy's device secrets: the export signing key and the snapshot key.

Storage keeps each one sealed under the KEK in the key vault
(:mod:`facegate.storage.secrets`, which also re-wraps them during a KEK
rotation: :func:`rewrap_secrets`); this module decides what they are for.

The signing key is an Ed25519 key derived from its 32-byte seed; its public
half is what a recipient needs to verify an export.
"""

from __future__ import annotations

import hashlib

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from ..storage import Store
from ..storage.errors import DeviceSecretError
from ..storage.secrets import device_secret as _stored_secret
from ..storage.secrets import rewrap_secrets
from .errors import DeviceKeyError

SIGNING = "signing"
SNAPSHOT = "snapshot"

__all__ = [
    "SIGNING",
    "SNAPSHOT",
    "SigningKey",
    "device_public_key",
    "device_secret",
    "key_id",
    "rewrap_secrets",
]


async def device_secret(store: Store, name: str, *, create: bool = True) -> bytes:
    """The named device secret (storage keeps it sealed), created on first use. DeviceKeyError if unusable."""
    try:
        return await _stored_secret(store, name, create=create)
    except DeviceSecretError as exc:
        raise DeviceKeyError(str(exc)) from None


class SigningKey:
    """The device's Ed25519 export signing key (private half in memory only)."""

    def __init__(self, seed: bytes) -> None:
        self._key = Ed25519PrivateKey.from_private_bytes(seed)
        self.public_bytes = self._key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    @property
    def key_id(self) -> str:
        """Fingerprint of the public key (first 16 hex digits of its SHA-256)."""
        return key_id(self.public_bytes)

    def sign(self, data: bytes) -> bytes:
        return self._key.sign(data)

    @classmethod
    async def load(cls, store: Store) -> SigningKey:
        """Load (or create on first use) the device signing key."""
        return cls(await device_secret(store, SIGNING))


def key_id(public_key: bytes) -> str:
    """Fingerprint of an Ed25519 public key."""
    return hashlib.sha256(public_key).hexdigest()[:16]


async def device_public_key(store: Store) -> bytes:
    """The device's Ed25519 public key (32 raw bytes), creating the key pair on first use."""
    return (await SigningKey.load(store)).public_bytes
