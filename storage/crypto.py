"""AES-256-GCM primitives: data keys, key wrapping, AAD binding.

Scheme
------
* The device KEK (32 bytes) wraps each subject's DEK (32 random bytes) with
  AES-256-GCM. The wrap's AAD is ``"facegate/dek/v1" || kek_id || subject_id``,
  so a wrapped DEK copied onto another subject's row does not unwrap.
* A DEK encrypts that subject's templates and attributes. Template AAD binds
  subject id, template id and model id; attribute AAD binds the subject id.
  Swapping or moving ciphertexts between rows therefore fails authentication.
* Stored blob layout: ``nonce (12 bytes) || ciphertext || tag (16 bytes)``.

Nonce policy (why nonces never repeat)
--------------------------------------
Every encryption draws a fresh 96-bit nonce from ``os.urandom``. With random
nonces, NIST SP 800-38D allows up to 2^32 encryptions per key. Each DEK
encrypts a subject's few templates plus attribute updates; its use count is
stored next to it and capped at :data:`DEK_MAX_USES` (2^20) so the collision
probability stays below 2^-57. The KEK's wrap count is kept in the database
and capped at :data:`KEK_MAX_WRAPS` (2^30); rotation resets it with a new KEK.
"""

from __future__ import annotations

import hashlib
import hmac
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
DEK_MAX_USES = 1 << 20
KEK_MAX_WRAPS = 1 << 30

_SEP = b"\x00"


class AuthenticationFailed(Exception):  # internal signal, mapped to TamperError
    """GCM tag mismatch: wrong key, modified bytes or different AAD."""


def new_key() -> bytes:
    """32 bytes from the OS CSPRNG."""
    return os.urandom(KEY_BYTES)


def kek_id(kek: bytes) -> str:
    """A stable public fingerprint of a KEK (the check value stored in the database).

    HMAC-SHA256 keyed by the KEK over a fixed label; it reveals nothing about
    the key and lets start-up tell a wrong KEK from tampered data.
    """
    return hmac.new(kek, b"facegate/kek-id/v1", hashlib.sha256).hexdigest()[:32]


def template_aad(subject_id: str, template_id: str, model_id: str) -> bytes:
    return _SEP.join((b"facegate/template/v1", subject_id.encode(), template_id.encode(), model_id.encode()))


def subject_aad(subject_id: str) -> bytes:
    return _SEP.join((b"facegate/subject/v1", subject_id.encode()))


def dek_aad(kek_fingerprint: str, subject_id: str) -> bytes:
    return _SEP.join((b"facegate/dek/v1", kek_fingerprint.encode(), subject_id.encode()))


def seal(aead: AESGCM, plaintext: bytes, aad: bytes) -> bytes:
    """Encrypt with a fresh random nonce; returns ``nonce || ct || tag``."""
    nonce = os.urandom(NONCE_BYTES)
    return nonce + aead.encrypt(nonce, plaintext, aad)


def open_sealed(aead: AESGCM, blob: bytes, aad: bytes) -> bytes:
    """Decrypt a :func:`seal` blob; raises :class:`AuthenticationFailed`."""
    if len(blob) < NONCE_BYTES + TAG_BYTES:
        raise AuthenticationFailed("blob too short")
    try:
        return aead.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], aad)
    except InvalidTag:
        raise AuthenticationFailed("tag mismatch") from None


def wrap_dek(kek: AESGCM, kek_fingerprint: str, subject_id: str, dek: bytes) -> bytes:
    return seal(kek, dek, dek_aad(kek_fingerprint, subject_id))


def unwrap_dek(kek: AESGCM, kek_fingerprint: str, subject_id: str, wrapped: bytes) -> bytes:
    dek = open_sealed(kek, wrapped, dek_aad(kek_fingerprint, subject_id))
    if len(dek) != KEY_BYTES:
        raise AuthenticationFailed("bad DEK length")
    return dek
