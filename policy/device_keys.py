"""Device secrets kept with storage key material: the export signing key and the snapshot key.

Each secret is 32 random bytes, sealed with AES-256-GCM under the device KEK
and kept in the key vault (``vault.key_meta``, name ``policy.secret.<name>``)
as ``<kek id>:<hex blob>``; the AAD binds the name and the KEK id. So:

* a copy of the main database never holds them;
* ``facegate destroy`` shreds them with the rest of the vault;
* after a KEK rotation the secret is re-wrapped under the active KEK the next
  time it is loaded while the previous KEK is still held (the running device
  holds both during a rotation).

The signing key is an Ed25519 key derived from its 32-byte seed; its public
half is what a recipient needs to verify an export.
"""

from __future__ import annotations

import hashlib

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from ..storage import Store, Tx
from ..storage.crypto import AuthenticationFailed, new_key, open_sealed, seal
from ..storage.errors import KeyUnavailableError
from ..storage.keys import KeyRing, get_meta, set_meta
from .errors import DeviceKeyError

PREFIX = "policy.secret."
SIGNING = "signing"
SNAPSHOT = "snapshot"


def _aad(name: str, kid: str) -> bytes:
    return b"\x00".join((b"facegate/device-secret/v1", name.encode(), kid.encode()))


async def _wrap(store: Store, tx: Tx, name: str, secret: bytes) -> None:
    kid, kek = await store.keys.wrapping_key(tx)
    await set_meta(tx, PREFIX + name, f"{kid}:{seal(kek, secret, _aad(name, kid)).hex()}")


def _unwrap(kek: AESGCM, name: str, kid: str, blob_hex: str) -> bytes:
    try:
        return open_sealed(kek, bytes.fromhex(blob_hex), _aad(name, kid))
    except (AuthenticationFailed, ValueError):
        raise DeviceKeyError(f"device {name} key failed authentication (vault tampered?)") from None


async def device_secret(store: Store, name: str, *, create: bool = True) -> bytes:
    """The named device secret, created on first use. DeviceKeyError if unusable."""
    async with store.transaction() as tx:
        value = await get_meta(tx, PREFIX + name)
        if value is None:
            if not create:
                raise DeviceKeyError(f"no device {name} key in the vault")
            secret = new_key()
            try:
                await _wrap(store, tx, name, secret)
            except KeyUnavailableError as exc:
                raise DeviceKeyError(f"cannot create the device {name} key: {exc}") from None
            return secret
        kid, _, blob = value.partition(":")
        kek = store.keys.get(kid)
        if kek is None:
            # Inside our transaction the database lock is held: refresh must read through tx.
            await store.keys.refresh(tx)
            kek = store.keys.get(kid)
        if kek is None:
            raise DeviceKeyError(
                f"the device {name} key is wrapped under KEK {kid[:8]}, which this process does not "
                "hold (KEK rotated without the device running?)"
            )
        secret = _unwrap(kek, name, kid, blob)
        active_kid, _ = await store.keys.wrapping_key(tx)
        if active_kid != kid:
            await _wrap(store, tx, name, secret)
        return secret


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


async def rewrap_secrets(tx: Tx, ring: KeyRing, new_kid: str) -> int:
    """Re-wrap every device secret under KEK ``new_kid`` inside ``tx``; returns how many.

    Meant for ``storage.rotate_kek``'s final transaction (next to the DEK
    re-wrap), so the signing and snapshot keys survive a KEK rotation even
    when the device is not running during it.
    """
    new = ring.get(new_kid)
    if new is None:
        raise DeviceKeyError(f"KEK {new_kid[:8]} is not held")
    rows = await tx.fetchall("SELECT name, value FROM vault.key_meta WHERE name LIKE 'policy.secret.%'")
    done = 0
    for full, value in rows:
        name = str(full)[len(PREFIX) :]
        kid, _, blob = str(value).partition(":")
        if kid == new_kid:
            continue
        old = ring.get(kid)
        if old is None:
            raise DeviceKeyError(f"device {name} key is wrapped under KEK {kid[:8]}, which is not held")
        secret = _unwrap(old, name, kid, blob)
        await set_meta(tx, str(full), f"{new_kid}:{seal(new, secret, _aad(name, new_kid)).hex()}")
        done += 1
    return done
