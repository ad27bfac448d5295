"""The device fingerprint a licence binds to, by deployment mode.

kiosk (dedicated hardware)
    Reads, under ``root`` (default ``/``), in this fallback order, the first non-empty,
    non-placeholder value of each slot:

    * serial:  ``sys/class/dmi/id/product_serial``, ``proc/device-tree/serial-number``
    * machine: ``etc/machine-id``, ``var/lib/dbus/machine-id``
    * model:   ``sys/class/dmi/id/product_name``, ``proc/device-tree/model``

    A missing slot (a VM without a DMI serial) is recorded as empty; at least one slot must
    have a value. The fingerprint is ``sha256(salt \\0 "kiosk" \\0 serial \\0 machine \\0 model)``
    in hex. Raw values stay inside :func:`kiosk_fingerprint`: never logged, published or stored.

app (SDK on a multipurpose host)
    Opens no identifier file at all. The fingerprint is the SHA-256 of a random 32-byte install
    secret created at first start and kept KEK-sealed in the store's key vault.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import FingerprintError

if TYPE_CHECKING:
    from ...storage import Store

SOURCES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("serial", ("sys/class/dmi/id/product_serial", "proc/device-tree/serial-number")),
    ("machine", ("etc/machine-id", "var/lib/dbus/machine-id")),
    ("model", ("sys/class/dmi/id/product_name", "proc/device-tree/model")),
)
"""Slot -> files in fallback order (relative to the identifier root)."""
_PLACEHOLDERS = frozenset(
    {"", "0", "none", "default string", "to be filled by o.e.m.", "not specified", "system serial number"}
)
INSTALL_SECRET = "licence.install"  # noqa: S105  # a vault entry name, not a secret


@dataclass(frozen=True, slots=True)
class Fingerprint:
    """The hash a licence binds to, and what it is made of (slot names only, never values)."""

    mode: str
    value: str
    slots: tuple[str, ...]

    @property
    def kind(self) -> str:
        """The licence binding kind this fingerprint matches."""
        return "fingerprint" if self.mode == "kiosk" else "install"


def _read(path: Path) -> str:
    try:
        data = path.read_bytes()[:4096]
    except OSError:
        return ""
    text = data.replace(b"\x00", b"").decode("utf-8", "replace").strip()
    return "" if text.lower() in _PLACEHOLDERS else text


def kiosk_fingerprint(salt: str, root: Path = Path("/")) -> Fingerprint:
    """The salted hash of the hardware identifiers under ``root`` (blocking: small file reads)."""
    values: list[str] = []
    found: list[str] = []
    for slot, candidates in SOURCES:
        value = ""
        for rel in candidates:
            value = _read(root / rel)
            if value:
                found.append(slot)
                break
        values.append(value)
    if not found:
        raise FingerprintError(
            f"no device identifier under {root}: none of "
            + ", ".join(rel for _, c in SOURCES for rel in c)
            + " is readable (a kiosk needs at least one; use deployment = 'app' on a shared host)"
        )
    h = hashlib.sha256(b"\x00".join(x.encode() for x in (salt, "kiosk", *values))).hexdigest()
    return Fingerprint(mode="kiosk", value=h, slots=tuple(found))


def install_fingerprint(secret: bytes) -> Fingerprint:
    """The app-mode fingerprint from the install secret (no file is read)."""
    h = hashlib.sha256(b"facegate/install-id/v1\x00" + secret).hexdigest()
    return Fingerprint(mode="app", value=h, slots=("install_id",))


async def device_fingerprint(mode: str, *, salt: str, root: Path, store: Store | None) -> Fingerprint:
    """The fingerprint of this device in ``mode`` (``kiosk`` or ``app``)."""
    if mode == "app":
        if store is None:
            raise FingerprintError("deployment = 'app' keeps its install id in the store: enable [storage]")
        from ..device_keys import device_secret  # noqa: PLC0415  # storage-bound part loads on use

        return install_fingerprint(await device_secret(store, INSTALL_SECRET))
    import asyncio  # noqa: PLC0415  # only the kiosk path goes to a thread

    return await asyncio.to_thread(kiosk_fingerprint, salt, root)
