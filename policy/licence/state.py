"""Licence states and the pure evaluation of a licence file against this device and clock."""

from __future__ import annotations

import base64
import binascii
import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .document import DAY, Licence, key_id, parse, verify
from .errors import LicenceFormatError, LicenceRefused
from .fingerprint import Fingerprint


class LicenceState(enum.StrEnum):
    """Every state a device's licence can be in (docs/licence.md)."""

    VALID = "valid"
    GRACE = "grace"
    EXPIRED = "expired"
    INVALID_SIGNATURE = "invalid_signature"
    UNTRUSTED_KEY = "untrusted_key"
    WRONG_DEVICE = "wrong_device"
    NOT_YET_VALID = "not_yet_valid"
    CLOCK_ROLLBACK = "clock_rollback"
    NO_SEAT = "no_seat"
    REVOKED = "revoked"
    MISSING = "missing"

    @property
    def usable(self) -> bool:
        """Recognition and enrolment run only in these states."""
        return self in (LicenceState.VALID, LicenceState.GRACE)

    @property
    def tamper(self) -> bool:
        """States that also raise a security event."""
        return self in TAMPER


TAMPER = frozenset(
    {
        LicenceState.INVALID_SIGNATURE,
        LicenceState.UNTRUSTED_KEY,
        LicenceState.WRONG_DEVICE,
        LicenceState.CLOCK_ROLLBACK,
    }
)


@dataclass(frozen=True, slots=True)
class LicenceStatus:
    """What the device knows about its licence right now (published on ``licence``)."""

    state: LicenceState
    fingerprint: str
    detail: str = ""
    licence_id: str | None = None
    binding: str | None = None
    not_after: int | None = None
    grace_until: int | None = None
    features: Mapping[str, Any] = field(default_factory=dict)
    seat: Mapping[str, Any] = field(default_factory=dict)

    def days_left(self, now: float) -> float | None:
        end = self.grace_until if self.state is LicenceState.GRACE else self.not_after
        if end is None:
            return None
        return round(max(0.0, (end - now) / DAY), 2)

    def feature_int(self, name: str) -> int | None:
        value = self.features.get(name)
        return value if isinstance(value, int) and not isinstance(value, bool) else None


def _pool_of(lease: Licence, trusted: Mapping[str, bytes]) -> Licence:
    """The vendor-signed pool licence a lease carries, verified; its service key signs the lease."""
    pool_text = lease.body.get("pool")
    if not isinstance(pool_text, str):
        raise LicenceFormatError("a lease must carry its pool licence")
    pool = parse(pool_text.encode())
    verify(pool, trusted)
    if pool.binding_kind != "pool":
        raise LicenceRefused("invalid_signature", "the licence a lease carries is not a pool licence")
    try:
        service_pub = base64.b64decode(str(pool.body.get("service_key", "")), validate=True)
    except (binascii.Error, ValueError):
        raise LicenceFormatError("the pool licence's service_key is not base64") from None
    if key_id(service_pub) != pool.binding_value:
        raise LicenceRefused("invalid_signature", "the pool's service key does not match its binding")
    verify(lease, {key_id(service_pub): service_pub})
    return pool


def evaluate(
    blob: bytes | None,
    *,
    trusted: Mapping[str, bytes],
    fingerprint: Fingerprint,
    now: float,
    high_water: float,
    tolerance_s: float,
) -> LicenceStatus:
    """The licence state of ``blob`` on this device at wall time ``now``.

    Order: missing, format/signature/key, device binding, clock rollback, validity window.
    """
    fp = fingerprint.value
    if blob is None:
        return LicenceStatus(state=LicenceState.MISSING, fingerprint=fp, detail="no licence installed")
    try:
        lic = parse(blob)
        window: Licence = lic
        if lic.binding_kind == "lease":
            window_pool = _pool_of(lic, trusted)
            features = window_pool.features
            grace_days = window_pool.grace_days
            pool_end: float = window_pool.not_after
        else:
            verify(lic, trusted)
            features, grace_days, pool_end = lic.features, lic.grace_days, math.inf
    except LicenceFormatError as exc:
        return LicenceStatus(state=LicenceState.INVALID_SIGNATURE, fingerprint=fp, detail=str(exc))
    except LicenceRefused as exc:
        return LicenceStatus(state=LicenceState(exc.state), fingerprint=fp, detail=exc.detail)
    base: dict[str, Any] = {
        "fingerprint": fp,
        "licence_id": lic.licence_id,
        "binding": lic.binding_kind,
        "features": features,
    }
    wanted = fingerprint.kind
    if lic.binding_kind in ("pool",):
        return LicenceStatus(
            state=LicenceState.WRONG_DEVICE, detail="a pool licence belongs to a licence service", **base
        )
    if lic.binding_kind not in ("lease", wanted):
        return LicenceStatus(
            state=LicenceState.WRONG_DEVICE,
            detail=f"a {lic.binding_kind} licence on a {fingerprint.mode} device",
            **base,
        )
    if lic.binding_value != fp:
        return LicenceStatus(state=LicenceState.WRONG_DEVICE, detail="issued for another device", **base)
    end = int(min(window.not_after, pool_end))
    grace_until = end + grace_days * DAY
    base |= {"not_after": end, "grace_until": grace_until}
    if high_water - now > tolerance_s:
        return LicenceStatus(
            state=LicenceState.CLOCK_ROLLBACK,
            detail=f"the clock is {high_water - now:.0f} s behind the latest time seen",
            **base,
        )
    if now < window.not_before:
        return LicenceStatus(state=LicenceState.NOT_YET_VALID, detail="before not_before", **base)
    if now <= end:
        return LicenceStatus(state=LicenceState.VALID, **base)
    if now <= grace_until:
        return LicenceStatus(state=LicenceState.GRACE, detail="expired; within grace days", **base)
    return LicenceStatus(state=LicenceState.EXPIRED, detail="expired and past its grace days", **base)
