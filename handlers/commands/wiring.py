"""Build the command service from config and the device's parts (typed, passed in)."""

from __future__ import annotations

from ...runtime.bus import EventBus
from ...runtime.clock import Clock
from ...runtime.config.link import CommandsSection
from .auth import NonceCache, NonceStore, Verifier
from .idempotent import MemoryResults, ResultLedger, ResultStore
from .reply_sig import ReplySigner
from .service import CommandLink, CommandService
from .verbs import Tunables, VerbParts, device_verbs


async def build_command_service(
    section: CommandsSection,
    link: CommandLink,
    *,
    bus: EventBus,
    clock: Clock,
    nonce_store: NonceStore | None = None,
    tunables: Tunables | None = None,
    parts: VerbParts | None = None,
    result_store: ResultStore | None = None,
    signer: ReplySigner | None = None,
) -> CommandService:
    """A ready :class:`CommandService` (its nonce cache already loaded from ``nonce_store``).

    ``parts`` are the device parts the verbs act on (:class:`~.verbs.VerbParts`). Without a
    nonce store, commands signed before this call are refused (a restart must not reopen
    the replay window).
    """
    floor = 0 if nonce_store is not None else int(clock.wall() * 1000)
    nonces = NonceCache(section.nonce_cache, store=nonce_store, floor_ms=floor)
    await nonces.load()
    verifier = Verifier(
        section.operators,
        device_id=link.topics.device_id,
        clock=clock,
        window_s=section.window_s,
        nonces=nonces,
    )
    verbs = device_verbs(
        clock=clock,
        device_id=link.topics.device_id,
        tunables=tunables or Tunables(),
        parts=parts,
    )
    return CommandService(
        link,
        verifier=verifier,
        verbs=verbs,
        bus=bus,
        clock=clock,
        max_payload_bytes=section.max_payload_bytes,
        queue=section.queue,
        ledger=ResultLedger(result_store or MemoryResults(), window_s=section.window_s),
        signer=signer,
    )
