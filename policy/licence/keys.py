"""Vendor / seat-service key files: Ed25519 private keys in PKCS#8 PEM, mode 0600."""

from __future__ import annotations

import base64
import os
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_pem_private_key,
)

from .document import public_bytes
from .errors import LicenceError


def write_private_key(path: Path) -> str:
    """Create a key pair at ``path`` (refuses to overwrite); returns the public key in base64."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise LicenceError(f"{path} exists; refusing to overwrite a key") from None
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    return base64.b64encode(public_bytes(key)).decode()


def read_private_key(path: Path) -> Ed25519PrivateKey:
    """Load a key written by :func:`write_private_key`; LicenceError names the file and reason."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise LicenceError(f"{path}: cannot read the key file ({exc.strerror})") from None
    try:
        key = load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise LicenceError(f"{path}: not an unencrypted PEM private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise LicenceError(f"{path}: not an Ed25519 key")
    return key
