"""Device secrets kept with the key material: 32 random bytes per name, sealed under the KEK.

Each secret is sealed with AES-256-GCM under the device KEK and kept in the
key vault (``vault.key_meta``, name ``policy.secret.<name>``) as
``<kek id>:<hex blob>``; the AAD binds the name and the KEK id. So:

* a copy of the main database never holds them;
* teardown shreds them with the rest of the vault;
* after a KEK rotation the secret is re-wrapped under the active KEK the next
  time it is loaded while the previous KEK is still held (the running device
  holds both during a rotation), and :func:`rewrap_secrets` re-wraps all of
  them in a rotation's final transaction.

The privacy policy decides what the secrets are for (``facegate.policy.device_keys``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .crypto import AuthenticationFailed, new_key, open_sealed, seal
from .db import Tx
from .errors import DeviceSecretError, KeyUnavailableError
from .keys import KeyRing, get_meta, set_meta

if TYPE_CHECKING:
    from .store import Store

PREFIX = "policy.secret."


def _aad(name: str, kid: str) -> bytes:
    return b"\x00".join((b"facegate/device-secret/v1", name.encode(), kid.encode()))


async def _wrap(store: Store, tx: Tx, name: str, secret: bytes) -> None:
    kid, kek = await store.keys.wrapping_key(tx)
    await set_meta(tx, PREFIX + name, f"{kid}:{seal(kek, secret, _aad(name, kid)).hex()}")


def _unwrap(kek: AESGCM, name: str, kid: str, blob_hex: str) -> bytes:
    try:
        return open_sealed(kek, bytes.fromhex(blob_hex), _aad(name, kid))
    except (AuthenticationFailed, ValueError):
        raise DeviceSecretError(f"device {name} key failed authentication (vault tampered?)") from None


async def device_secret(store: Store, name: str, *, create: bool = True) -> bytes:
    """The named device secret, created on first use. DeviceSecretError if unusable."""
    async with store.transaction() as tx:
        value = await get_meta(tx, PREFIX + name)
        if value is None:
            if not create:
                raise DeviceSecretError(f"no device {name} key in the vault")
            secret = new_key()
            try:
                await _wrap(store, tx, name, secret)
            except KeyUnavailableError as exc:
                raise DeviceSecretError(f"cannot create the device {name} key: {exc}") from None
            return secret
        kid, _, blob = value.partition(":")
        kek = store.keys.get(kid)
        if kek is None:
            # Inside our transaction the database lock is held: refresh must read through tx.
            await store.keys.refresh(tx)
            kek = store.keys.get(kid)
        if kek is None:
            raise DeviceSecretError(
                f"the device {name} key is wrapped under KEK {kid[:8]}, which this process does not "
                "hold (KEK rotated without the device running?)"
            )
        secret = _unwrap(kek, name, kid, blob)
        active_kid, _ = await store.keys.wrapping_key(tx)
        if active_kid != kid:
            await _wrap(store, tx, name, secret)
        return secret


async def rewrap_secrets(tx: Tx, ring: KeyRing, new_kid: str) -> int:
    """Re-wrap every device secret under KEK ``new_kid`` inside ``tx``; returns how many.

    Meant for ``storage.rotate_kek``'s final transaction (next to the DEK
    re-wrap), so the signing and snapshot keys survive a KEK rotation even
    when the device is not running during it.
    """
    new = ring.get(new_kid)
    if new is None:
        raise DeviceSecretError(f"KEK {new_kid[:8]} is not held")
    rows = await tx.fetchall("SELECT name, value FROM vault.key_meta WHERE name LIKE 'policy.secret.%'")
    done = 0
    for full, value in rows:
        name = str(full)[len(PREFIX) :]
        kid, _, blob = str(value).partition(":")
        if kid == new_kid:
            continue
        old = ring.get(kid)
        if old is None:
            raise DeviceSecretError(f"device {name} key is wrapped under KEK {kid[:8]}, which is not held")
        secret = _unwrap(old, name, kid, blob)
        await set_meta(tx, str(full), f"{new_kid}:{seal(new, secret, _aad(name, new_kid)).hex()}")
        done += 1
    return done
