"""Config sections of the MQTT event payloads, the command layer and integrations.

Owned by the MQTT link (issue 6): ``[events]`` (payload content),
``[commands]`` (operator keys, replay window, size limit) and
``[homeassistant]`` (MQTT discovery).
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

from ._fields import FieldError, setting

_OPERATOR = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")


def decode_public_key(text: str) -> bytes:
    """Decode an operator's Ed25519 public key (base64 of the 32 raw bytes).

    Raises ValueError with a reason (never echoing more than the key's length).
    """
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("not base64") from None
    if len(raw) != 32:
        raise ValueError(f"an Ed25519 public key is 32 bytes, got {len(raw)}")
    return raw


@dataclass(frozen=True)
class EventsSection:
    """What event payloads may contain."""

    include_names: bool = setting(
        False, doc="Put display names into event/access payloads (off: pseudonymous ids only)."
    )


@dataclass(frozen=True)
class CommandsSection:
    """Signed operator commands on <prefix>/<device id>/cmd/<verb>."""

    enabled: bool = setting(True, doc="Subscribe to cmd/<verb>; off means the device ignores commands.")
    operators: dict[str, str] = setting(
        factory=dict,
        doc="Operator name -> Ed25519 public key (base64 of 32 bytes), e.g. "
        "{ alice = \"...\" }. Create a key pair with 'facegate operator keygen'. Every verb but "
        "ping must be signed by one of these keys.",
    )
    window_s: float = setting(
        60.0,
        doc="A command's timestamp may differ from the device clock by at most this many seconds.",
        gt=0,
        le=3600,
    )
    nonce_cache: int = setting(
        4096, doc="How many recent nonces are remembered (persisted) to refuse replays.", ge=16
    )
    max_payload_bytes: int = setting(
        1_048_576,
        doc="Command payloads larger than this are refused before they are parsed.",
        ge=1024,
        le=16 * 1_048_576,
    )
    queue: int = setting(32, doc="Commands waiting to run; more are refused as 'busy'.", ge=1, le=1024)

    def check(self) -> None:
        for name, key in self.operators.items():
            if not _OPERATOR.match(name):
                raise FieldError(f"operators.{name}", "operator names are [a-z0-9][a-z0-9_.-]*")
            try:
                decode_public_key(key)
            except ValueError as exc:
                raise FieldError(f"operators.{name}", str(exc)) from None


@dataclass(frozen=True)
class HomeAssistantSection:
    """Home Assistant MQTT discovery (a lock and sensors, availability from status)."""

    discovery: bool = setting(False, doc="Publish retained Home Assistant discovery configs.")
    discovery_prefix: str = setting("homeassistant", doc="Home Assistant's discovery prefix.")
    lock: bool = setting(
        False,
        doc="Offer a lock entity. Home Assistant cannot sign commands, so 'unlock' must go "
        "through an operator bridge that signs it as cmd/open: the lock is published only "
        "when lock_bridge names that bridge's operator; otherwise it is absent (removed).",
    )
    lock_bridge: str = setting(
        "",
        doc="Operator name (a key in [commands.operators]) of the bridge that turns Home "
        "Assistant's UNLOCK on <prefix>/<id>/ha/lock/set into a signed cmd/open. Empty: no bridge, "
        "so no lock entity.",
    )

    def check(self) -> None:
        if not self.discovery_prefix or any(c in self.discovery_prefix for c in "#+"):
            raise FieldError("discovery_prefix", "must be non-empty, without '#' or '+'")
