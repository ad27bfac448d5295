"""Idempotent retries for actuating verbs (issue 10.10).

A reply can be lost after the door already moved (an ACL blocks the reply
topic, the link drops). The operator then retries with the SAME signed
envelope. The nonce cache refuses it as a replay, which is safe but tells the
operator nothing. :class:`ResultLedger` remembers the outcome of every
authenticated actuating command by nonce; a retry that carries the same
signature (so the same signed verb, args, device and time) and is still inside
the time window gets the recorded outcome back with ``"replayed": true`` and
actuates nothing. With a store the ledger is ``storage.CommandResults`` (it
survives a restart); without one a bounded in-memory map.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ...storage.command_results import StoredResult

ACTUATING_VERBS = frozenset({"open", "lockdown", "release"})
"""Verbs whose retries are answered from the ledger instead of actuating again."""


class ResultStore(Protocol):
    """``facegate.storage.CommandResults`` fits."""

    async def get(self, nonce: str) -> StoredResult | None: ...

    async def put(self, stored: StoredResult, *, prune_before: float) -> None: ...


class MemoryResults:
    """Bounded in-memory :class:`ResultStore` for a device without storage (lost on restart)."""

    def __init__(self, size: int = 1024) -> None:
        self._rows: OrderedDict[str, StoredResult] = OrderedDict()
        self._size = size

    async def get(self, nonce: str) -> StoredResult | None:
        return self._rows.get(nonce)

    async def put(self, stored: StoredResult, *, prune_before: float) -> None:
        for nonce in [n for n, r in self._rows.items() if r.at < prune_before]:
            del self._rows[nonce]
        self._rows.setdefault(stored.nonce, stored)
        while len(self._rows) > self._size:
            self._rows.popitem(last=False)


def sig_digest(env: Mapping[str, Any]) -> str:
    """Digest of the envelope's signature (Ed25519 is deterministic: same signed bytes, same sig)."""
    return hashlib.sha256(str(env.get("sig", "")).encode("utf-8")).hexdigest()


class ResultLedger:
    """Lookup and record of actuating outcomes (see module docstring)."""

    def __init__(self, store: ResultStore, *, window_s: float) -> None:
        self._store = store
        self._window_s = window_s

    async def recorded(self, env: Mapping[str, Any]) -> StoredResult | None:
        """The recorded outcome of this exact signed command, else None.

        The caller must have verified the signature and time window first.
        """
        verb, nonce = env.get("verb"), env.get("nonce")
        if verb not in ACTUATING_VERBS or not isinstance(nonce, str):
            return None
        row = await self._store.get(nonce)
        if row is None or row.verb != verb or row.sig_digest != sig_digest(env):
            return None
        return row

    async def record(
        self, env: Mapping[str, Any], *, ok: bool, code: str, message: str, result: dict[str, Any], at: float
    ) -> None:
        verb, nonce = env.get("verb"), env.get("nonce")
        if verb not in ACTUATING_VERBS or not isinstance(nonce, str) or not isinstance(verb, str):
            return
        from ...storage.command_results import StoredResult  # noqa: PLC0415  # storage loads lazily (optional part)

        row = StoredResult(nonce, verb, sig_digest(env), ok, code, message, dict(result), at)
        await self._store.put(row, prune_before=at - 2 * self._window_s)
