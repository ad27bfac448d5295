"""Command authentication: Ed25519 operator signatures, time window, nonce replay cache.

Checks run in this order, so that nothing unauthenticated can change state
(not even the nonce cache): device id, operator known, signature valid,
timestamp inside the window, nonce unseen. Only then is the nonce recorded.

Replays across a restart: the nonce cache is persisted through a
:class:`NonceStore` (the storage key-value table in the device). When the
cache is full, the oldest nonce is evicted and its timestamp becomes a floor:
anything signed at or before it is refused, so eviction can never reopen a
replay. Without a store, the floor starts at the process start time.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any, Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ...runtime.clock import Clock
from ...runtime.config.link import decode_public_key
from .envelope import signed_bytes
from .errors import CommandReplay, CommandUnauthorised

NONCE_KEY = "commands.nonces"


class NonceStore(Protocol):
    """Where seen nonces survive a restart (``facegate.storage.KvState`` fits)."""

    async def get(self, key: str) -> str | None: ...

    async def set(self, key: str, value: str) -> None: ...


class NonceCache:
    """Bounded, optionally persisted set of (nonce -> signing time in ms)."""

    def __init__(self, size: int, *, store: NonceStore | None = None, floor_ms: int = 0) -> None:
        self.size = size
        self._store = store
        self._seen: OrderedDict[str, int] = OrderedDict()
        self.floor_ms = floor_ms
        """Commands signed at or before this time are refused (evicted history)."""

    async def load(self) -> None:
        """Read the persisted cache (call once at start). A corrupt value is ignored loudly upstream."""
        if self._store is None:
            return
        raw = await self._store.get(NONCE_KEY)
        if not raw:
            return
        data = json.loads(raw)
        self.floor_ms = max(self.floor_ms, int(data.get("floor_ms", 0)))
        for nonce, ts in data.get("seen", []):
            self._seen[str(nonce)] = int(ts)

    def seen(self, nonce: str, ts_ms: int) -> bool:
        return nonce in self._seen or ts_ms <= self.floor_ms

    async def add(self, nonce: str, ts_ms: int, *, prune_before_ms: int) -> None:
        """Record a nonce; drop entries older than the window (they fail the time check anyway)."""
        self._seen[nonce] = ts_ms
        for old, t in list(self._seen.items()):
            if t < prune_before_ms:
                del self._seen[old]
        while len(self._seen) > self.size:
            _, t = self._seen.popitem(last=False)
            self.floor_ms = max(self.floor_ms, t)
        if self._store is not None:
            body = {"floor_ms": self.floor_ms, "seen": [[n, t] for n, t in self._seen.items()]}
            await self._store.set(NONCE_KEY, json.dumps(body, separators=(",", ":")))


class Verifier:
    """Authenticates signed envelopes for one device."""

    def __init__(
        self,
        operators: Mapping[str, str],
        *,
        device_id: str,
        clock: Clock,
        window_s: float,
        nonces: NonceCache,
    ) -> None:
        self._keys = {
            name: Ed25519PublicKey.from_public_bytes(decode_public_key(key))
            for name, key in operators.items()
        }
        self._device_id = device_id
        self._clock = clock
        self._window_ms = int(window_s * 1000)
        self._nonces = nonces

    @property
    def window_s(self) -> float:
        return self._window_ms / 1000

    @property
    def operators(self) -> tuple[str, ...]:
        return tuple(sorted(self._keys))

    def check_device(self, env: Mapping[str, Any]) -> None:
        if env.get("device_id") != self._device_id:
            raise CommandUnauthorised("command is addressed to another device", code="wrong_device")

    def precheck(self, env: Mapping[str, Any]) -> bool:
        """True when a schema-valid envelope would pass :meth:`authenticate` right now.

        Pure (records nothing): the command service uses it to admit only
        genuinely signed safety commands to its priority lane, so a flood of
        forged ones cannot delay a real ``lockdown``.
        """
        try:
            self._check_signed(env)
        except (CommandUnauthorised, KeyError, TypeError, ValueError):
            return False
        ts = int(env["ts"])
        return not self._nonces.seen(str(env["nonce"]), ts)

    def verify_signed(self, env: Mapping[str, Any]) -> str:
        """Device, operator, signature and time window (NOT the nonce); returns the operator."""
        return self._check_signed(env)

    def _check_signed(self, env: Mapping[str, Any]) -> str:
        """Device, operator, signature and time window; returns the operator."""
        self.check_device(env)
        operator, sig = env.get("operator"), env.get("sig")
        if not isinstance(operator, str) or not isinstance(sig, str):
            raise CommandUnauthorised("command is not signed", code="unsigned")
        key = self._keys.get(operator)
        if key is None:
            raise CommandUnauthorised("operator is not authorised on this device", code="unknown_operator")
        try:
            key.verify(base64.b64decode(sig, validate=True), signed_bytes(env))
        except (InvalidSignature, binascii.Error, ValueError):
            raise CommandUnauthorised("signature does not verify", code="bad_signature") from None
        ts = int(env["ts"])
        now = int(self._clock.wall() * 1000)
        if abs(now - ts) > self._window_ms:
            raise CommandReplay("timestamp outside the accepted window", code="stale")
        return operator

    async def authenticate(self, env: Mapping[str, Any]) -> str:
        """Check a schema-valid envelope; return the operator name. Records the nonce.

        Raises CommandUnauthorised (wrong_device, unsigned, unknown_operator,
        bad_signature) or CommandReplay (stale, replay).
        """
        operator = self._check_signed(env)
        ts = int(env["ts"])
        now = int(self._clock.wall() * 1000)
        nonce = str(env["nonce"])
        if self._nonces.seen(nonce, ts):
            raise CommandReplay("nonce already used", code="replay")
        await self._nonces.add(nonce, ts, prune_before_ms=now - self._window_ms)
        return operator
