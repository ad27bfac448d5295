"""Device-signed command replies (issue 10.9).

The device signs every reply with its Ed25519 device key (the export signing
key of :mod:`facegate.policy.device_keys`): ``sig`` = Ed25519 over
``facegate-reply-v1\\0`` + the request's correlation (MQTT 5 correlation data,
else the envelope's ``correlation_id``, else empty) + ``\\0`` + canonical JSON of
the reply without ``sig``. Binding the correlation stops a recorded genuine
reply from being replayed as the answer to another request. ``key_id`` names
the key. ``facegate cmd`` verifies it against the device public key (option,
file, environment, or a pin stored earlier; see docs/mqtt.md).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any, Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from .envelope import canonical

REPLY_DOMAIN = b"facegate-reply-v1\x00"


class ReplySigner(Protocol):
    """``facegate.policy.device_keys.SigningKey`` fits."""

    @property
    def key_id(self) -> str: ...

    def sign(self, data: bytes) -> bytes: ...


def reply_signed_bytes(body: Mapping[str, Any], correlation: bytes) -> bytes:
    """What the device key signs for ``body`` answering ``correlation``."""
    return REPLY_DOMAIN + correlation + b"\x00" + canonical({k: v for k, v in body.items() if k != "sig"})


def sign_reply(body: dict[str, Any], correlation: bytes, signer: ReplySigner) -> dict[str, Any]:
    """``body`` with ``key_id`` and ``sig`` added."""
    signed = {**body, "key_id": signer.key_id}
    signed["sig"] = base64.b64encode(signer.sign(reply_signed_bytes(signed, correlation))).decode("ascii")
    return signed


def verify_reply(body: Mapping[str, Any], correlation: bytes, public_key: bytes) -> bool:
    """True when ``body`` carries a valid signature by ``public_key`` for ``correlation``."""
    sig = body.get("sig")
    if not isinstance(sig, str):
        return False
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(
            base64.b64decode(sig, validate=True), reply_signed_bytes(body, correlation)
        )
    except (InvalidSignature, binascii.Error, ValueError):
        return False
    return True
