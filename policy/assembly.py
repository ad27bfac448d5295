"""Device wiring of the privacy policy: opened after the store and recognition.

Add ``_subsystem("policy.assembly")`` to ``runtime.assembly.FACTORIES`` after
recognition. Registers component ``policy`` (:class:`PolicyHost`, whose
``policy`` is the :class:`Policy` the MQTT command layer calls) and two
services: the retention sweeper and the gallery watcher.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any

from ..runtime.events import AccessDecision, Decision
from .core import Policy
from .retention import RetentionSweeper
from .watch import GalleryWatcher

if TYPE_CHECKING:
    from ..runtime.assembly import AssemblyContext, Parts
    from ..storage import Store


class PolicyHost:
    """Resource that opens the :class:`Policy` once the store and the matcher exist."""

    def __init__(self, ctx: AssemblyContext, store: Store, recognition: Any | None) -> None:
        self._ctx = ctx
        self._store = store
        self._recognition = recognition
        self._policy: Policy | None = None

    @property
    def policy(self) -> Policy:
        if self._policy is None:
            raise RuntimeError("policy is not open yet")
        return self._policy

    async def __aenter__(self) -> PolicyHost:
        cfg = self._ctx.config
        sink = self._recognition.engine.matcher if self._recognition is not None else None
        self._policy = await Policy(
            self._store, cfg.privacy, clock=self._ctx.clock, sink=sink, device_id=cfg.device.id
        ).open()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._policy is not None:
            self._policy.attach(None)


class _Deferred:
    """A service built from the opened policy when the supervisor first runs it."""

    def __init__(self, name: str, host: PolicyHost, kind: type[RetentionSweeper] | type[GalleryWatcher]):
        self._name = name
        self._host = host
        self._kind = kind
        self.service: RetentionSweeper | GalleryWatcher | None = None

    @property
    def name(self) -> str:
        return self._name

    async def run(self) -> None:
        if self.service is None:
            self.service = self._kind(self._host.policy, clock=self._host.policy.clock)
        await self.service.run()


class MatchRecorder:
    """Records each granted match, so template retention counts from the last use.

    Subscribes to :class:`AccessDecision` (never dropped); only the subject id
    and time are stored, in the subject row the policy owns.
    """

    def __init__(self, host: PolicyHost, ctx: AssemblyContext) -> None:
        self._host = host
        self._bus = ctx.bus

    @property
    def name(self) -> str:
        return "policy.match_recorder"

    async def run(self) -> None:
        async with self._bus.subscribe(AccessDecision, name=self.name, maxsize=1024) as sub:
            async for decision in sub:
                # a remote open naming a subject is not a face match (handlers/access/remote.py)
                face = decision.reason != "remote_open"
                if decision.decision is Decision.GRANTED and decision.subject_id and face:
                    await self._host.policy.record_match(decision.subject_id, decision.at)


def _snapshot_sink(host: PolicyHost) -> Callable[[AccessDecision, bytes], Awaitable[None]]:
    from .snapshots import put_snapshot  # noqa: PLC0415  # only when snapshots are on

    async def sink(decision: AccessDecision, crop: bytes) -> None:
        await put_snapshot(
            host.policy, decision_id=decision.event_id, subject_id=decision.subject_id, image=crop
        )

    return sink


def build(ctx: AssemblyContext, parts: Parts) -> None:
    """Add the policy host (resource), the sweeper and the watcher when a store exists."""
    store = parts.components.get("store")
    if store is None:
        return
    host = PolicyHost(ctx, store, parts.components.get("recognition"))  # type: ignore[arg-type]  # Store, set by storage.assembly
    parts.resources.append(host)
    parts.components["policy"] = host
    _add_command_actions(ctx, parts, host)
    parts.services.append(_Deferred("policy.retention", host, RetentionSweeper))
    parts.services.append(_Deferred("policy.gallery_watch", host, GalleryWatcher))
    parts.services.append(MatchRecorder(host, ctx))
    _add_incidents(ctx, parts, host)
    _add_remote_destroy(ctx, parts, host)
    recognition = parts.components.get("recognition")
    if ctx.config.privacy.decision_snapshots and recognition is not None:
        # The policy alone decides that face crops are kept: only then does recognition
        # get a sink, and every crop is sealed and kept at most snapshot_hours.
        recognition.snapshot_sink = _snapshot_sink(host)  # type: ignore[attr-defined]  # RecognitionHost


def _add_incidents(ctx: AssemblyContext, parts: Parts, host: PolicyHost) -> None:
    """Component ``incidents`` (the responder) and, with a tamper line, the tamper input."""
    from ..storage import kek_source_from_config  # noqa: PLC0415  # storage is present here
    from .incidents import IncidentResponder, TamperInput  # noqa: PLC0415  # loads with the device
    from .teardown import destroy  # noqa: PLC0415  # same

    storage = getattr(ctx.config, "storage", None)
    kek = None if storage is None else kek_source_from_config(storage)

    async def shred(incident_id: str) -> None:
        await destroy(host.policy, actor=f"incident:{incident_id}", kek=kek)

    responder = IncidentResponder(
        lambda: host.policy,
        ctx.bus,
        ctx.clock,
        rules=dict(ctx.config.privacy.incidents),
        door=parts.components.get("door"),
        shred=shred,
    )
    parts.services.append(responder)
    parts.components["incidents"] = responder
    gpio, section = parts.components.get("gpio"), getattr(ctx.config, "gpio", None)
    if gpio is not None and section is not None and section.tamper_line is not None:
        parts.services.append(
            TamperInput(
                ctx.bus, ctx.clock, gpio, line=section.tamper_line, open_high=section.tamper_open_high
            )
        )


def _add_remote_destroy(ctx: AssemblyContext, parts: Parts, host: PolicyHost) -> None:
    """Component ``teardown``: the two-signature remote ``destroy`` verb."""
    from ..storage import kek_source_from_config  # noqa: PLC0415  # storage is present here
    from .remote_destroy import RemoteDestroy  # noqa: PLC0415  # command layer loads lazily

    commands, storage = getattr(ctx.config, "commands", None), getattr(ctx.config, "storage", None)
    parts.components["teardown"] = RemoteDestroy(
        lambda: host.policy,
        device_id=ctx.config.device.id,
        operators={} if commands is None else commands.operators,
        kek=None if storage is None else kek_source_from_config(storage),
        link=lambda: parts.components.get("mqtt"),  # added after the policy (runtime.assembly)
    )


def _add_command_actions(ctx: AssemblyContext, parts: Parts, host: PolicyHost) -> None:
    """Component ``privacy`` (rights verbs over MQTT); the device signing key joins KEK rotation."""
    from .actions import PrivacyActions  # noqa: PLC0415  # command layer loads lazily
    from .device_keys import rewrap_secrets  # noqa: PLC0415  # same

    def embedder() -> Any:
        recognition = parts.components.get("recognition")
        if recognition is None:
            return None
        return recognition.engine.embed_image  # type: ignore[attr-defined]  # RecognitionHost

    parts.components["privacy"] = PrivacyActions(host, embedder)
    keys = parts.components.get("keys")
    extra = getattr(keys, "extra", None)  # storage.assembly.LiveKeyRotation
    if isinstance(extra, list):
        # The policy's device secrets are KEK-wrapped too: re-wrap them in the same final
        # transaction, or a live rotation would strand the export signing key.
        extra.append(rewrap_secrets)
