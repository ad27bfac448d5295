"""Remote decommissioning: the signed ``destroy`` verb needs two distinct operators.

Wiping a door terminal is irreversible, so one operator's signature is not
enough. The command envelope is signed by operator A (as every command); its
args carry operator B's co-signature over :func:`cosign_bytes` (domain tag,
verb, device id and the envelope's nonce, so it cannot be replayed or moved to
another device or command):

    {"confirm_device_id": "<id>", "cosign": {"operator": "<B>", "sig": "<base64 Ed25519>"}}

Then, in order: :func:`facegate.policy.teardown.destroy` (matcher emptied,
key vault shredded, data deleted, final ``teardown`` audit row and receipt on
``event/privacy``, device marked destroyed so it refuses to start until
re-initialised with ``facegate keys init``); the link is told to leave no
retained message behind (the ``status`` topic is cleared now, and again
instead of the offline status at shutdown). The reply carries counts only.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any, Protocol

import structlog
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ..handlers.commands.envelope import canonical
from ..runtime.config.link import decode_public_key
from ..storage import KekSource
from .core import Policy
from .errors import PolicyActionError
from .teardown import destroy

_log = structlog.get_logger("facegate.policy")
COSIGN_DOMAIN = b"facegate-cosign/v1\n"


def cosign_bytes(*, device_id: str, nonce: str, verb: str = "destroy") -> bytes:
    """What the second operator signs."""
    return COSIGN_DOMAIN + canonical({"device_id": device_id, "nonce": nonce, "verb": verb})


def cosign(key: Ed25519PrivateKey, operator: str, *, device_id: str, nonce: str) -> dict[str, str]:
    """The ``cosign`` argument operator ``operator`` adds (operator tooling, tests)."""
    sig = key.sign(cosign_bytes(device_id=device_id, nonce=nonce))
    return {"operator": operator, "sig": base64.b64encode(sig).decode("ascii")}


class DecommissionLink(Protocol):
    """What the teardown needs from the MQTT link: stop presence, clear the retained status."""

    decommissioned: bool

    async def publish(self, suffix: str, payload: bytes, *, qos: int = ..., retain: bool = ...) -> None: ...


class RemoteDestroy:
    """Component ``teardown``: the ``destroy`` verb (see module docstring)."""

    def __init__(
        self,
        policy: Policy,
        *,
        device_id: str,
        operators: Mapping[str, str],
        kek: KekSource | None,
        link: DecommissionLink | None,
    ) -> None:
        self._policy = policy
        self._device_id = device_id
        self._operators = dict(operators)
        self._kek = kek
        self._link = link

    def _check(self, operator: str | None, nonce: str, args: Mapping[str, Any]) -> str:
        if args.get("confirm_device_id") != self._device_id:
            raise PolicyActionError(
                "confirm_device_id must name this device", code="bad_args", bad_input=True
            )
        co = args.get("cosign") or {}
        second = str(co.get("operator", ""))
        if operator is None or not second or second == operator:
            raise PolicyActionError(
                "destroy needs a second, distinct operator's co-signature",
                code="cosign_required",
                bad_input=True,
            )
        key_b64 = self._operators.get(second)
        if key_b64 is None:
            raise PolicyActionError(
                "the co-signer is not an operator of this device", code="bad_cosign", bad_input=True
            )
        try:
            sig = base64.b64decode(str(co.get("sig", "")), validate=True)
            public = Ed25519PublicKey.from_public_bytes(decode_public_key(key_b64))
            public.verify(sig, cosign_bytes(device_id=self._device_id, nonce=nonce))
        except (binascii.Error, ValueError, InvalidSignature):
            raise PolicyActionError(
                "the co-signature does not verify", code="bad_cosign", bad_input=True
            ) from None
        return second

    async def destroy(self, *, operator: str | None, nonce: str, args: Mapping[str, Any]) -> dict[str, Any]:
        second = self._check(operator, nonce, args)
        report = await destroy(self._policy, actor=f"remote:{operator}+{second}", kek=self._kek)
        link = self._link
        if link is not None:
            link.decommissioned = True  # no birth/offline status any more (MqttLink)
            await link.publish("status", b"", retain=True)  # empty retained = deleted
        _log.warning("policy.remote_destroyed", subjects=report.subjects, kek_destroyed=report.kek_destroyed)
        return {
            "destroyed": True,
            "subjects": report.subjects,
            "templates": report.templates,
            "keys_shredded": report.keys_shredded,
            "kek_destroyed": report.kek_destroyed,
            "retained_cleared": link is not None,
        }
