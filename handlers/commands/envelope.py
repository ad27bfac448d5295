"""The signed command envelope (wire format in docs/mqtt.md, schema ``schemas/envelope.json``).

A command is one UTF-8 JSON object published on ``<prefix>/<device_id>/cmd/<verb>``::

    {"v": 1, "verb": "open", "device_id": "gate-1", "ts": 1767225600123,
     "nonce": "3b6f0c...", "operator": "alice", "args": {...},
     "reply_to": "ops/replies/alice", "correlation_id": "42",   # MQTT 3.1.1 only
     "sig": "<base64 Ed25519 signature>"}

The signature covers :func:`signed_bytes`: a domain tag and the canonical JSON
(sorted keys, compact, UTF-8) of the envelope without ``sig``; so it binds the
verb, the arguments, the device id, the timestamp (milliseconds) and the nonce,
and also who signed it and where the reply goes.
"""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Mapping
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

DOMAIN = b"facegate-cmd/v1\n"
VERSION = 1


def canonical(obj: Any) -> bytes:
    """Canonical JSON bytes: sorted keys, no spaces, UTF-8, no NaN."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode(
        "utf-8"
    )


def signed_bytes(envelope: Mapping[str, Any]) -> bytes:
    """What the operator's key signs: the domain tag + canonical envelope without ``sig``."""
    return DOMAIN + canonical({k: v for k, v in envelope.items() if k != "sig"})


def new_nonce() -> str:
    """128 random bits, hex."""
    return secrets.token_hex(16)


def build(
    verb: str,
    args: Mapping[str, Any],
    *,
    device_id: str,
    ts_ms: int,
    operator: str | None = None,
    key: Ed25519PrivateKey | None = None,
    nonce: str | None = None,
    reply_to: str | None = None,
    correlation_id: str | None = None,
) -> dict[str, Any]:
    """A command envelope, signed when ``key`` (and ``operator``) are given."""
    env: dict[str, Any] = {
        "v": VERSION,
        "verb": verb,
        "device_id": device_id,
        "ts": ts_ms,
        "nonce": nonce or new_nonce(),
        "args": dict(args),
    }
    if reply_to is not None:
        env["reply_to"] = reply_to
    if correlation_id is not None:
        env["correlation_id"] = correlation_id
    if key is not None:
        if not operator:
            raise ValueError("a signed command names its operator")
        env["operator"] = operator
        env["sig"] = base64.b64encode(key.sign(signed_bytes(env))).decode("ascii")
    return env


def encode(envelope: Mapping[str, Any]) -> bytes:
    """Wire bytes of an envelope."""
    return canonical(envelope)
