"""The device public key ``facegate cmd`` checks reply signatures with (issue 10.9).

Sources, first found wins: ``--device-key`` (base64 of the 32-byte Ed25519 key,
or a file holding it), ``FACEGATE_DEVICE_KEY`` (same forms), or a key pinned
earlier in the known-devices file (``--known-devices`` or
``FACEGATE_KNOWN_DEVICES``; JSON ``{"<prefix>/<device>": "<base64>"}``, mode
0600). A key given explicitly is pinned there when a known-devices file is
configured, so later calls need no option; a pinned key that differs from a
given one is refused (the device key changed or someone is lying). The key is
what ``facegate subjects public-key`` prints on the device.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from pathlib import Path

ENV_KEY = "FACEGATE_DEVICE_KEY"
ENV_KNOWN = "FACEGATE_KNOWN_DEVICES"


def _decode(value: str, origin: str) -> bytes:
    path = Path(value)
    try:
        text = path.read_text(encoding="utf-8").strip() if path.is_file() else value.strip()
    except OSError as exc:
        raise ValueError(f"{origin}: cannot read {path}: {exc.strerror or exc}") from None
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{origin}: not base64 (expected the device Ed25519 public key)") from None
    if len(raw) != 32:
        raise ValueError(f"{origin}: an Ed25519 public key has 32 bytes, got {len(raw)}")
    return raw


def _load_known(path: Path) -> dict[str, str]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ValueError(f"known-devices file {path}: unreadable ({exc})") from None
    if not isinstance(data, dict):
        raise ValueError(f"known-devices file {path}: not a JSON object")  # noqa: TRY004  # usage error
    return {str(k): str(v) for k, v in data.items()}


def resolve_device_key(option: str | None, known: Path | None, *, prefix: str, device: str) -> bytes | None:
    """The key replies of ``prefix/device`` must be signed with, or None when none is known."""
    if known is None and os.environ.get(ENV_KNOWN):
        known = Path(os.environ[ENV_KNOWN])
    name = f"{prefix}/{device}"
    given: bytes | None = None
    if option:
        given = _decode(option, "--device-key")
    elif os.environ.get(ENV_KEY):
        given = _decode(os.environ[ENV_KEY], ENV_KEY)
    if known is None:
        return given
    pins = _load_known(known)
    pinned = _decode(pins[name], f"known-devices file {known} ({name})") if name in pins else None
    if given is None:
        return pinned
    if pinned is not None and pinned != given:
        raise ValueError(f"the key given for {name} differs from the one pinned in {known}; refusing")
    if pinned is None:
        pins[name] = base64.b64encode(given).decode("ascii")
        fd = os.open(known, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(pins, fh, indent=2, sort_keys=True)
    return given
