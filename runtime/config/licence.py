"""Config section of the device licence (owned by policy/licence).

Off by default so development builds and tests without a licence run as before; a product
build turns it on, and then recognition needs a usable licence (see docs/licence.md).
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ._fields import FieldError, setting

_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")


def decode_vendor_key(text: str) -> bytes:
    """A vendor Ed25519 public key from base64 (32 raw bytes); ValueError names the problem."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("not valid base64") from None
    if len(raw) != 32:
        raise ValueError(f"an Ed25519 public key is 32 bytes, this is {len(raw)}")
    return raw


@dataclass(frozen=True)
class LicenceSection:
    """Device-bound licence: fingerprint, trusted vendor keys, seat service."""

    enabled: bool = setting(
        False,
        doc="Check a licence. On: recognition and enrolment need a usable licence (the door "
        "keeps working for the exit button, fire release and signed remote open).",
    )
    deployment: Literal["kiosk", "app"] = setting(
        "kiosk",
        doc="'kiosk' (dedicated hardware): bind to a salted hash of the hardware serial, machine "
        "id and device model. 'app' (SDK on a multipurpose host): read no hardware identifier; "
        "bind to a random install id kept in the encrypted store.",
    )
    salt: str = setting(
        "facegate-licence-v1",
        doc="Salt of the kiosk fingerprint hash (per vendor), so the hash cannot be joined with "
        "other databases of serial numbers.",
    )
    identifier_root: Path = setting(
        Path("/"),
        doc="Filesystem root the kiosk identifier files are read under (a container that "
        "mounts the host's /sys and /etc elsewhere sets it).",
    )
    vendor_keys: dict[str, str] = setting(
        factory=dict,
        doc="Trusted vendor key name -> Ed25519 public key (base64). Several keys allow vendor "
        "key rotation. Create one with 'facegate licence keygen'.",
    )
    file: Path = setting(
        Path("facegate.licence"),
        doc="Where the installed licence (or the seat lease) lives; replaced atomically.",
    )
    clock_tolerance_s: float = setting(
        600.0,
        doc="A wall clock further than this behind the highest time seen is a clock rollback "
        "(small NTP corrections are not).",
        gt=0,
    )
    check_interval_s: float = setting(
        60.0, doc="Seconds between licence re-evaluations (expiry, clock).", gt=0
    )
    seat_service: bool = setting(
        False,
        doc="Take a seat from a fleet licence service ('facegate licence serve') on the same "
        "broker instead of a per-device licence file.",
    )
    seat_prefix: str = setting(
        "facegate/v1/_licence",
        doc="Topic prefix of the licence service (request/reply contract in docs/licence.md).",
    )
    renew_s: float = setting(3600.0, doc="Seconds between lease renewals with the licence service.", gt=0)
    request_timeout_s: float = setting(10.0, doc="How long to wait for the licence service to answer.", gt=0)

    def check(self) -> None:
        for name, key in self.vendor_keys.items():
            if not _NAME.match(name):
                raise FieldError(f"vendor_keys.{name}", "key names are [a-z0-9][a-z0-9_.-]*")
            try:
                decode_vendor_key(key)
            except ValueError as exc:
                raise FieldError(f"vendor_keys.{name}", str(exc)) from None
        if self.enabled and not self.vendor_keys:
            raise FieldError("vendor_keys", "a licence check needs at least one trusted vendor key")
        if not self.salt:
            raise FieldError("salt", "must not be empty")
