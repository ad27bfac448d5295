"""Licence documents: canonical JSON signed with Ed25519 by a vendor (or seat service) key.

File format (UTF-8 JSON)::

    {"body": {...}, "key_id": "<16 hex>", "signature": "<base64 Ed25519 over canonical(body)>"}

``canonical(x)`` is ``json.dumps(x, sort_keys=True, separators=(",", ":"), ensure_ascii=False)``
encoded as UTF-8. The body fields are listed in :data:`REQUIRED` (docs/licence.md has the table).
Times are integer POSIX seconds (UTC). Parsing never trusts the body before the signature is
checked against a trusted key (:func:`verify`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from .errors import LicenceFormatError, LicenceRefused

VERSION = 1
DAY = 86_400
BINDINGS = ("fingerprint", "install", "pool", "lease")
"""fingerprint: a kiosk hash; install: an app-mode install id; pool: a seat pool held by a
licence service (``service_key`` names the key that signs its leases); lease: a short-lived
seat lease bound to a fingerprint/install hash, signed by the service, carrying the pool."""
REQUIRED: dict[str, type | tuple[type, ...]] = {
    "v": int,
    "licence_id": str,
    "customer": str,
    "binding": dict,
    "not_before": int,
    "not_after": int,
    "grace_days": int,
    "features": dict,
    "issued_at": int,
}


def canonical(obj: Any) -> bytes:
    """The one byte string a signature covers."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def key_id(public: bytes) -> str:
    """Short id of an Ed25519 public key (first 16 hex of its SHA-256)."""
    return hashlib.sha256(public).hexdigest()[:16]


def public_bytes(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


@dataclass(frozen=True, slots=True)
class Licence:
    """A parsed (not yet verified) licence."""

    body: Mapping[str, Any]
    key_id: str
    signature: bytes
    raw: bytes

    @property
    def licence_id(self) -> str:
        return str(self.body["licence_id"])

    @property
    def binding_kind(self) -> str:
        return str(self.body["binding"]["kind"])

    @property
    def binding_value(self) -> str:
        return str(self.body["binding"]["value"])

    @property
    def not_before(self) -> int:
        return int(self.body["not_before"])

    @property
    def not_after(self) -> int:
        return int(self.body["not_after"])

    @property
    def grace_days(self) -> int:
        return int(self.body["grace_days"])

    @property
    def features(self) -> dict[str, Any]:
        return dict(self.body["features"])

    def feature_int(self, name: str) -> int | None:
        value = self.body["features"].get(name)
        return value if isinstance(value, int) and not isinstance(value, bool) else None


def parse(blob: bytes) -> Licence:
    """Parse a licence file; LicenceFormatError says what is wrong."""
    try:
        doc = json.loads(blob.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise LicenceFormatError("not a licence: the file is not UTF-8 JSON") from None
    if not isinstance(doc, dict) or set(doc) != {"body", "key_id", "signature"}:
        raise LicenceFormatError("not a licence: expected exactly body, key_id and signature")
    body, kid, sig = doc["body"], doc["key_id"], doc["signature"]
    if not isinstance(body, dict) or not isinstance(kid, str) or not isinstance(sig, str):
        raise LicenceFormatError("not a licence: body must be an object, key_id/signature strings")
    for name, kind in REQUIRED.items():
        value = body.get(name)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise LicenceFormatError(f"licence field {name!r} is missing or not a {_kind(kind)}")
    binding = body["binding"]
    if binding.get("kind") not in BINDINGS or not isinstance(binding.get("value"), str):
        raise LicenceFormatError(f"licence binding must be {{kind: {'|'.join(BINDINGS)}, value: str}}")
    if body["v"] != VERSION:
        raise LicenceFormatError(f"licence format v{body['v']} is not supported (this build reads v1)")
    try:
        signature = base64.b64decode(sig, validate=True)
    except (binascii.Error, ValueError):
        raise LicenceFormatError("licence signature is not base64") from None
    return Licence(body=body, key_id=kid, signature=signature, raw=blob)


def _kind(kind: type | tuple[type, ...]) -> str:
    return kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)


def verify(lic: Licence, trusted: Mapping[str, bytes]) -> None:
    """Check the signature against ``trusted`` (key id -> raw public key).

    Raises LicenceRefused with state ``untrusted_key`` or ``invalid_signature``.
    """
    public = trusted.get(lic.key_id)
    if public is None:
        raise LicenceRefused("untrusted_key", f"signed by key {lic.key_id}, which is not trusted here")
    try:
        Ed25519PublicKey.from_public_bytes(public).verify(lic.signature, canonical(dict(lic.body)))
    except InvalidSignature:
        raise LicenceRefused("invalid_signature", "the signature does not match the content") from None


def trust_list(keys: Mapping[str, str]) -> dict[str, bytes]:
    """Config ``vendor_keys`` (name -> base64) as key id -> raw public key."""
    out: dict[str, bytes] = {}
    for text in keys.values():
        raw = base64.b64decode(text, validate=True)
        out[key_id(raw)] = raw
    return out


def sign(body: Mapping[str, Any], key: Ed25519PrivateKey) -> bytes:
    """The licence file for ``body`` signed by ``key``."""
    doc = {
        "body": dict(body),
        "key_id": key_id(public_bytes(key)),
        "signature": base64.b64encode(key.sign(canonical(dict(body)))).decode(),
    }
    return json.dumps(doc, sort_keys=True, indent=1).encode() + b"\n"


def make_body(
    *,
    binding: tuple[str, str],
    now: float,
    days: float,
    features: Mapping[str, Any] | None = None,
    customer: str = "",
    grace_days: int = 7,
    not_before: float | None = None,
    licence_id: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A licence body; ``binding`` is ``(kind, value)``."""
    kind, value = binding
    if kind not in BINDINGS:
        raise ValueError(f"binding kind must be one of {BINDINGS}")
    start = int(now if not_before is None else not_before)
    body: dict[str, Any] = {
        "v": VERSION,
        "licence_id": licence_id or f"lic-{uuid.uuid4().hex[:16]}",
        "customer": customer,
        "binding": {"kind": kind, "value": value},
        "not_before": start,
        "not_after": int(start + days * DAY),
        "grace_days": int(grace_days),
        "features": dict(features or {}),
        "issued_at": int(now),
    }
    body.update(extra or {})
    return body


def issue_test_licence(
    vendor_key: Ed25519PrivateKey,
    fingerprint: str,
    *,
    now: float,
    days: float = 30,
    features: Mapping[str, Any] | None = None,
    kind: str = "fingerprint",
    grace_days: int = 7,
) -> bytes:
    """A signed licence for ``fingerprint`` (tests, simulated devices and the demo).

    Valid from a day before ``now`` (a simulated clock may lag) for ``days`` after ``now``.
    """
    body = make_body(
        binding=(kind, fingerprint),
        now=now,
        not_before=now - DAY,
        days=days + 1,
        features=features,
        customer="test",
        grace_days=grace_days,
    )
    return sign(body, vendor_key)


def parse_feature(text: str) -> tuple[str, Any]:
    """``k=v`` from the command line: integers, true/false, else a string."""
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise ValueError(f"feature {text!r} is not k=v")
    if value.lower() in ("true", "false"):
        return name, value.lower() == "true"
    try:
        return name, int(value)
    except ValueError:
        return name, value
