"""Licence test fixtures: a real store, vendor keys, and kiosk identifier files under a tmp root.

The identifier files are the lowest seam (the kernel's sysfs / procfs files) carrying real
values; everything above them is the production code.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from facegate.policy.licence.document import public_bytes
from facegate.runtime.config._convert import build_section
from facegate.runtime.config.licence import LicenceSection

SERIAL = "SN-RAW-7731-XYZ"
MACHINE = "3f1b2c4d5e6f708192a3b4c5d6e7f809"
MODEL = "Acme Turnstile T-9000"


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "licence.db"


def write_identifiers(
    root: Path,
    *,
    serial: str | None = SERIAL,
    machine: str | None = MACHINE,
    model: str | None = MODEL,
    device_tree: bool = False,
) -> Path:
    """Kiosk identifier files under ``root`` (DMI, or device-tree for an ARM board)."""
    files = {
        ("proc/device-tree/serial-number" if device_tree else "sys/class/dmi/id/product_serial"): serial,
        "etc/machine-id": machine,
        ("proc/device-tree/model" if device_tree else "sys/class/dmi/id/product_name"): model,
    }
    for rel, value in files.items():
        if value is not None:
            p = root / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(value + "\n")
    return root


def b64pub(key: Ed25519PrivateKey) -> str:
    return base64.b64encode(public_bytes(key)).decode()


@pytest.fixture
def vendor() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def section(tmp_path: Path, vendor: Ed25519PrivateKey, **kw: Any) -> LicenceSection:
    raw: dict[str, Any] = {
        "enabled": True,
        "vendor_keys": {"vendor": b64pub(vendor)},
        "file": str(tmp_path / "device.licence"),
        "identifier_root": str(kw.pop("root", tmp_path / "root")),
    }
    raw.update(kw)
    return build_section(LicenceSection, raw, "licence", tmp_path)
