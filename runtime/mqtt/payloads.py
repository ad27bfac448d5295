"""JSON payloads of the presence and telemetry topics (contract in docs/mqtt.md).

Payloads are compact UTF-8 JSON objects with sorted keys. Telemetry passes
through the same redaction as log lines (:func:`facegate.runtime.logs.redact`),
so a snapshot provider that ever leaks a name, an embedding, an image or a
registered secret still cannot put it on the wire.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
from collections.abc import Mapping
from typing import Any

from .. import __version__
from ..clock import utc_iso
from ..logs import redact

ONLINE = "online"
OFFLINE = "offline"


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class Identity:
    """What the birth message says about this device (fixed for the process lifetime)."""

    device_id: str
    site: str
    config_digest: str
    started_at: float
    """Wall-clock POSIX seconds when the device process started."""
    version: str = __version__


def _jsonable(value: Any) -> Any:
    if isinstance(value, bool | int | str) or value is None:
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, enum.Enum):
        return _jsonable(value.value)
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _jsonable({f.name: getattr(value, f.name) for f in dataclasses.fields(value)})
    return str(value)


def encode(obj: Mapping[str, Any]) -> bytes:
    """Compact, sorted, strictly valid JSON (non-finite floats become null)."""
    return json.dumps(_jsonable(obj), sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def birth(identity: Identity, *, connected_at: float) -> bytes:
    """Retained ``status`` payload published after every (re)connect."""
    return encode(
        {
            "state": ONLINE,
            "device_id": identity.device_id,
            "site": identity.site,
            "version": identity.version,
            "started_at": utc_iso(identity.started_at),
            "connected_at": utc_iso(connected_at),
            "config_digest": identity.config_digest,
        }
    )


def will(identity: Identity) -> bytes:
    """Last Will registered at CONNECT: the broker publishes it (retained) if we vanish."""
    return encode(
        {
            "state": OFFLINE,
            "device_id": identity.device_id,
            "reason": "connection_lost",
            "started_at": utc_iso(identity.started_at),
        }
    )


def offline(identity: Identity, *, at: float) -> bytes:
    """Retained ``status`` payload a clean shutdown publishes itself before disconnecting."""
    return encode(
        {
            "state": OFFLINE,
            "device_id": identity.device_id,
            "reason": "shutdown",
            "started_at": utc_iso(identity.started_at),
            "at": utc_iso(at),
        }
    )


def telemetry(identity: Identity, snapshot: Mapping[str, object], *, at: float, seq: int) -> bytes:
    """``telemetry`` payload: the redacted snapshot plus ``device_id``, ``at`` and ``seq``.

    The link's own keys win over snapshot keys of the same name.
    """
    # Redact before converting: redaction recognises bytes and arrays by type.
    body: dict[str, Any] = _jsonable(redact(None, "", dict(snapshot)))
    body.update({"device_id": identity.device_id, "at": utc_iso(at), "seq": seq})
    return encode(body)
