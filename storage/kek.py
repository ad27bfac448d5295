"""Where the device key-encryption key (KEK) comes from.

Sources (config ``storage.kek_source``):

* ``file``: a key file holding the base64 KEK. Refused if group or others
  have any permission on it (must be 0600 or stricter).
* ``credential``: a systemd credential (``LoadCredential=``) in
  ``$CREDENTIALS_DIRECTORY``; systemd already restricts it to the service.
* ``env``: an environment variable holding the base64 KEK (tests, containers).
* ``passphrase``: a passphrase stretched with scrypt (n=2^15, r=8, p=1) using
  a random salt stored in the database. scrypt runs in a worker thread.

Every error names the source and never contains key bytes.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import enum
import hashlib
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from .crypto import KEY_BYTES
from .errors import KekSourceError, KeyFilePermissionError

SCRYPT_N = 1 << 15
SCRYPT_R = 8
SCRYPT_P = 1


class KekSourceKind(enum.StrEnum):
    FILE = "file"
    CREDENTIAL = "credential"
    ENV = "env"
    PASSPHRASE = "passphrase"  # noqa: S105  # the source kind, not a password


@dataclass(frozen=True)
class KekSource:
    """A configured KEK source. ``passphrase`` holds the resolved secret for PASSPHRASE."""

    kind: KekSourceKind
    file: Path | None = None
    credential: str | None = None
    env: str | None = None
    passphrase: str = field(default="", repr=False)
    scrypt_n: int = SCRYPT_N

    def describe(self) -> str:
        """Human-readable source name for error messages (never the key)."""
        if self.kind is KekSourceKind.FILE:
            return f"key file {self.file}"
        if self.kind is KekSourceKind.CREDENTIAL:
            return f"systemd credential {self.credential}"
        if self.kind is KekSourceKind.ENV:
            return f"environment variable {self.env}"
        return "passphrase (scrypt)"

    @property
    def next_file(self) -> Path | None:
        """Where rotation keeps the new KEK of a FILE source until it is installed."""
        return None if self.file is None else self.file.with_name(self.file.name + ".next")


def encode_key(kek: bytes) -> str:
    """The text form of a KEK (base64, one line)."""
    return base64.b64encode(kek).decode("ascii")


def parse_key(text: str, where: str) -> bytes:
    """Decode a base64 (or 64-hex-digit) KEK; raises KekSourceError naming ``where``."""
    s = text.strip()
    try:
        key = bytes.fromhex(s) if len(s) == 2 * KEY_BYTES else base64.b64decode(s, validate=True)
    except (ValueError, binascii.Error):
        raise KekSourceError(f"{where} does not hold a base64 or hex key") from None
    if len(key) != KEY_BYTES:
        raise KekSourceError(f"{where} holds a {len(key)}-byte key; expected {KEY_BYTES} bytes")
    return key


def read_key_file(path: Path, where: str, *, check_mode: bool = True) -> bytes:
    """Read a key file, refusing permissions looser than 0600."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise KekSourceError(f"{where} does not exist (run 'facegate keys init')") from None
    except OSError as exc:
        raise KekSourceError(f"{where} is unreadable: {exc.strerror}") from None
    if check_mode and st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFilePermissionError(
            f"{where} has permissions {stat.S_IMODE(st.st_mode):04o}; it must be 0600 or stricter (chmod 600)"
        )
    try:
        text = path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise KekSourceError(f"{where} is unreadable: {exc}") from None
    return parse_key(text, where)


def write_key_file(path: Path, kek: bytes, *, overwrite: bool = False) -> None:
    """Create a 0600 key file durably (fsync file and directory)."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if overwrite else os.O_EXCL)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        raise KekSourceError(f"key file {path} already exists; refusing to overwrite") from None
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, (encode_key(kek) + "\n").encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)
    fsync_dir(path.parent)


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def derive_from_passphrase(passphrase: str, salt: bytes, n: int = SCRYPT_N) -> bytes:
    """scrypt(passphrase, salt); CPU- and memory-heavy, call through a thread."""
    if not passphrase:
        raise KekSourceError("passphrase (scrypt) is empty")
    return hashlib.scrypt(
        passphrase.encode("utf-8"),
        salt=salt,
        n=n,
        r=SCRYPT_R,
        p=SCRYPT_P,
        maxmem=256 * 1024 * 1024,
        dklen=KEY_BYTES,
    )


async def read_source(source: KekSource, salt: bytes | None) -> bytes:
    """The KEK from ``source``. ``salt`` is required for PASSPHRASE. Blocking work is threaded."""
    where = source.describe()
    if source.kind is KekSourceKind.FILE:
        assert source.file is not None
        return await asyncio.to_thread(read_key_file, source.file, where)
    if source.kind is KekSourceKind.CREDENTIAL:
        cred_dir = os.environ.get("CREDENTIALS_DIRECTORY")
        if not cred_dir or not source.credential:
            raise KekSourceError(f"{where}: CREDENTIALS_DIRECTORY is not set (not under systemd?)")
        # systemd owns the credential's permissions; do not second-guess them.
        return await asyncio.to_thread(
            read_key_file, Path(cred_dir) / source.credential, where, check_mode=False
        )
    if source.kind is KekSourceKind.ENV:
        value = os.environ.get(source.env or "")
        if not value:
            raise KekSourceError(f"{where} is not set")
        return parse_key(value, where)
    if salt is None:
        raise KekSourceError(f"{where}: no scrypt salt in the database (run 'facegate keys init')")
    return await asyncio.to_thread(derive_from_passphrase, source.passphrase, salt, source.scrypt_n)
