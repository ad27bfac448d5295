"""Service ``commands``: receives ``cmd/<verb>``, checks it, runs it, replies.

Pipeline per message (stops at the first failure, which is replied with a
stable code and, for refusals, raised as ``SecurityEvent(COMMAND_REJECTED)``):

1. size: payloads over ``commands.max_payload_bytes`` are refused BEFORE parsing;
2. UTF-8, JSON object, bounded depth and size (:mod:`.guard`, BEFORE anything
   recursive), envelope schema, topic verb == envelope verb;
3. authentication (:class:`~.auth.Verifier`): device id, operator, Ed25519
   signature, time window, nonce (``ping`` needs no signature);
4. the verb's argument schema;
5. the verb itself (:class:`~.verbs.VerbTable`).

Nothing actuates before step 5, so a refused command never moves the relay.
Any per-message failure, of any type, becomes an error reply (``internal`` for an
unexpected one) plus ``COMMAND_REJECTED``: the worker never dies on a message.

Safety lane: a ``cmd/lockdown`` whose signature, device, time window and nonce
already check out when it arrives (:meth:`~.auth.Verifier.precheck`, pure) goes
to a small priority queue that the worker serves before anything else, so a
flood of bad commands delays a valid lockdown by at most the one message being
handled. Everything else (including forged lockdowns) waits in the normal
queue; when that is full the sender gets ``busy`` (at most
``_BUSY_INFLIGHT`` such replies in flight; the rest are only counted).

Replies (:mod:`.replies`) go to the MQTT 5 response topic, else the envelope's
``reply_to``, else ``<prefix>/<device id>/reply``; a command that did not
authenticate is answered only inside the device's own ``reply`` subtree, and a
``reply_to`` into the device topic tree is refused (``bad_reply_to``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass, field
from typing import Any

import structlog

from ...runtime.bus import EventBus
from ...runtime.clock import Clock
from ...runtime.errors import CodedError, FacegateError
from ...runtime.events import SecurityEvent, SecurityKind
from ...runtime.mqtt import InboundMessage, MqttPublishError
from .auth import Verifier
from .errors import CommandError, CommandRefused, VerbFailed
from .guard import check_shape
from .idempotent import ACTUATING_VERBS, MemoryResults, ResultLedger
from .replies import REPLY, CommandLink, Outcome, Replies
from .reply_sig import ReplySigner
from .schema import VERBS, first_error, schema_name
from .verbs import Invocation, VerbTable, coded

_log = structlog.get_logger("facegate.commands")
__all__ = ["REPLY", "URGENT_VERBS", "CommandLink", "CommandService", "CommandStats", "Outcome"]

URGENT_VERBS = frozenset({"lockdown"})
"""Verbs admitted to the priority lane once their signature checks out."""
_BUSY_INFLIGHT = 8


@dataclass
class CommandStats:
    received: int = 0
    executed: int = 0
    refused: dict[str, int] = field(default_factory=dict)
    failed: int = 0
    replies_lost: int = 0
    busy_dropped: int = 0
    urgent: int = 0


class CommandService:
    """Service ``commands`` (see module docstring)."""

    def __init__(
        self,
        link: CommandLink,
        *,
        verifier: Verifier,
        verbs: VerbTable,
        bus: EventBus,
        clock: Clock,
        max_payload_bytes: int,
        queue: int = 32,
        name: str = "commands",
        ledger: ResultLedger | None = None,
        signer: ReplySigner | None = None,
    ) -> None:
        self._replies = Replies(link, clock=clock, signer=signer)
        self._ledger = ledger or ResultLedger(MemoryResults(), window_s=verifier.window_s)
        self._link = link
        self._verifier = verifier
        self._verbs = verbs
        self._bus = bus
        self._clock = clock
        self._max = max_payload_bytes
        self._queue: asyncio.Queue[InboundMessage] = asyncio.Queue(queue)
        self._urgent: asyncio.Queue[tuple[InboundMessage, str]] = asyncio.Queue(queue)
        self._urgent_nonces: set[str] = set()
        self._work = asyncio.Event()
        self._busy = 0
        self._name = name
        self._topics = link.topics
        self._filter = f"{self._topics.base}/cmd/#"
        self._ready = asyncio.Event()
        self.stats = CommandStats()

    @property
    def name(self) -> str:
        return self._name

    async def wait_ready(self) -> None:
        """Return once the command filter is registered with the link."""
        await self._ready.wait()

    def health(self) -> dict[str, int]:
        return {
            "commands_received": self.stats.received,
            "commands_executed": self.stats.executed,
            "commands_refused": sum(self.stats.refused.values()),
            "commands_failed": self.stats.failed,
        }

    async def run(self) -> None:
        try:
            async with asyncio.TaskGroup() as tg:
                await self._link.subscribe(self._filter, self._enqueue_factory(tg), qos=1)
                self._ready.set()
                tg.create_task(self._worker(), name=f"{self._name}.worker")
        finally:
            self._ready.clear()
            # If the connection is gone, the next one simply will not resubscribe.
            with contextlib.suppress(MqttPublishError):
                await self._link.unsubscribe(self._filter)

    def _enqueue_factory(self, tg: asyncio.TaskGroup) -> Any:
        async def enqueue(msg: InboundMessage) -> None:
            self.stats.received += 1
            try:
                nonce = self._urgent_nonce(msg)
                if nonce is not None and nonce not in self._urgent_nonces:
                    self._urgent.put_nowait((msg, nonce))
                    self._urgent_nonces.add(nonce)
                    self.stats.urgent += 1
                else:
                    self._queue.put_nowait(msg)
                self._work.set()
            except asyncio.QueueFull:
                if self._busy >= _BUSY_INFLIGHT:
                    self.stats.busy_dropped += 1
                    return
                self._busy += 1
                busy = Outcome(None, False, "busy", "too many commands waiting", {}, None, None)
                tg.create_task(self._busy_reply(msg, busy), name=f"{self._name}.busy_reply")

        return enqueue

    def _urgent_nonce(self, msg: InboundMessage) -> str | None:
        """The nonce of a safety command that authenticates as it stands, else None (pure)."""
        verb = msg.topic.removeprefix(f"{self._topics.base}/cmd/")
        if verb not in URGENT_VERBS:
            return None
        try:
            env = self._parse(msg)
        except CommandError:
            return None
        if env["verb"] != verb or not self._verifier.precheck(env):
            return None
        return str(env["nonce"])

    async def _busy_reply(self, msg: InboundMessage, outcome: Outcome) -> None:
        try:
            await self._reply(msg, outcome)
        finally:
            self._busy -= 1

    async def _next(self) -> InboundMessage:
        while True:
            if not self._urgent.empty():
                msg, nonce = self._urgent.get_nowait()
                self._urgent_nonces.discard(nonce)
                return msg
            if not self._queue.empty():
                return self._queue.get_nowait()
            self._work.clear()
            await self._work.wait()

    async def _worker(self) -> None:
        while True:
            msg = await self._next()
            outcome = await self.handle(msg)
            try:
                await self._reply(msg, outcome)
            except Exception as exc:  # noqa: BLE001  # a reply that cannot be built must not kill the worker
                self.stats.replies_lost += 1
                _log.error("commands.reply_failed", verb=outcome.verb, error_type=type(exc).__name__)

    # -- the pipeline ---------------------------------------------------------------------

    async def handle(self, msg: InboundMessage) -> Outcome:
        """Run one message through the pipeline; never raises (except cancellation)."""
        seen: list[dict[str, Any]] = []  # the parsed envelope, then {} once authenticated
        outcome = await self._evaluate(msg, seen)
        if outcome.authenticated and not outcome.replayed and outcome.verb in ACTUATING_VERBS:
            try:
                await self._ledger.record(
                    seen[0], ok=outcome.ok, code=outcome.code, message=outcome.message,
                    result=outcome.result, at=self._clock.wall(),
                )
            except Exception as exc:  # noqa: BLE001  # the verb ran; a ledger failure must not hide its reply
                _log.error("commands.ledger_failed", verb=outcome.verb, error_type=type(exc).__name__)
        return outcome

    async def _evaluate(self, msg: InboundMessage, seen: list[dict[str, Any]]) -> Outcome:
        topic_verb = msg.topic.removeprefix(f"{self._topics.base}/cmd/")
        try:
            replay = await self._replayed(msg, topic_verb, seen)
            if replay is not None:
                return replay
            inv, result = await self._pipeline(msg, topic_verb, seen)
        except CommandError as exc:
            return self._refused(exc, topic_verb, _first(seen), authenticated=len(seen) > 1)
        except CodedError as exc:
            # A part's own coded refusal (policy, licence, key rotation): its code is the reply code.
            return self._refused(coded(exc), topic_verb, _first(seen), authenticated=len(seen) > 1)
        except RecursionError:
            too_deep = CommandRefused("the command is nested too deeply", code="too_deep")
            return self._refused(too_deep, topic_verb, _first(seen), authenticated=len(seen) > 1)
        except FacegateError as exc:
            # A part's own typed failure (GPIO, storage, ...): reply 'failed' instead of
            # crashing the worker (which loses the reply and restarts the service). Its
            # text may carry personal data, so only the type goes out.
            failed = VerbFailed(f"{type(exc).__name__} while running the verb")
            _log.warning("commands.verb_error", verb=topic_verb[:64], error_type=type(exc).__name__)
            return self._refused(failed, topic_verb, _first(seen), authenticated=len(seen) > 1)
        except Exception as exc:  # noqa: BLE001  # one bad message must never crash the worker (issue 10.3)
            # Unexpected: reply 'internal' and raise COMMAND_REJECTED; the type only
            # (the text may carry personal data). CancelledError is not an Exception.
            _log.error("commands.internal_error", verb=topic_verb[:64], error_type=type(exc).__name__)
            internal = CommandRefused("the command could not be processed", code="internal")
            return self._refused(internal, topic_verb, _first(seen), authenticated=len(seen) > 1)
        env = seen[0]
        self.stats.executed += 1
        # The operator's label may be a person's name: it goes to the audit log (accountability),
        # never to the device log.
        _log.info("commands.executed", verb=inv.verb)
        return Outcome(inv.verb, True, "ok", "done", result, _corr(env), _str(env.get("reply_to")), True)

    async def _replayed(
        self, msg: InboundMessage, topic_verb: str, seen: list[dict[str, Any]]
    ) -> Outcome | None:
        """A retry of an actuating command already run: its recorded outcome, else None.

        Only for an envelope whose signature and time window verify now and whose
        signature equals the recorded one (so the same signed verb/args/device).
        """
        if topic_verb not in ACTUATING_VERBS:
            return None
        env = self._parse(msg)
        if env["verb"] != topic_verb:
            return None
        self._replies.check_reply_to(env.get("reply_to"))
        if msg.response_topic is not None:
            self._replies.check_reply_to(msg.response_topic)
        try:
            self._verifier.verify_signed(env)
        except CommandError:
            return None  # the normal pipeline refuses it with the right code
        row = await self._ledger.recorded(env)
        if row is None:
            return None
        seen.extend([env, {}])
        _log.info("commands.replayed", verb=row.verb, code=row.code)
        return Outcome(
            row.verb, row.ok, row.code, row.message, row.result,
            _corr(env), _str(env.get("reply_to")), True, replayed=True,
        )

    async def _pipeline(
        self, msg: InboundMessage, topic_verb: str, seen: list[dict[str, Any]]
    ) -> tuple[Invocation, dict[str, Any]]:
        env = self._parse(msg)
        seen.append(env)
        if env["verb"] != topic_verb:
            raise CommandRefused("the topic's verb differs from the signed verb", code="verb_mismatch")
        self._replies.check_reply_to(env.get("reply_to"))
        if msg.response_topic is not None:
            self._replies.check_reply_to(msg.response_topic)
        operator: str | None = None
        if env["verb"] == "ping":
            self._verifier.check_device(env)
        else:
            operator = await self._verifier.authenticate(env)
            seen.append({})  # authenticated: its reply topic may be honoured
        problem = first_error(schema_name(env["verb"]), env["args"])
        if problem is not None:
            raise CommandRefused(f"args {problem}", code="bad_args")
        inv = Invocation(verb=env["verb"], args=env["args"], operator=operator, nonce=env["nonce"])
        return inv, await self._verbs.run(inv)

    def _parse(self, msg: InboundMessage) -> dict[str, Any]:
        if len(msg.payload) > self._max:
            raise CommandRefused(
                f"payload of {len(msg.payload)} bytes exceeds the limit of {self._max}", code="too_large"
            )
        try:
            text = msg.payload.decode("utf-8")
        except UnicodeDecodeError:
            raise CommandRefused("payload is not UTF-8", code="not_utf8") from None
        try:
            env = json.loads(text)
        except (ValueError, RecursionError):
            raise CommandRefused("payload is not JSON", code="bad_json") from None
        if not isinstance(env, dict):
            raise CommandRefused("payload is not a JSON object", code="bad_json")
        check_shape(env)  # bounded depth/size before anything recursive (issue 10.3)
        verb = env.get("verb")
        if isinstance(verb, str) and verb not in VERBS:
            raise CommandRefused("unknown verb", code="unknown_verb")
        problem = first_error("envelope", env)
        if problem is not None:
            raise CommandRefused(f"envelope {problem}", code="invalid")
        return env

    def _refused(
        self, exc: CommandError, topic_verb: str, env: dict[str, Any] | None, *, authenticated: bool = False
    ) -> Outcome:
        verb = env.get("verb") if env is not None else None
        verb_text = verb if isinstance(verb, str) else None
        if exc.refusal:
            self.stats.refused[exc.code] = self.stats.refused.get(exc.code, 0) + 1
            _log.warning("commands.refused", verb=verb_text, code=exc.code)
            self._bus.publish(
                SecurityEvent(
                    at=self._clock.wall(),
                    kind=SecurityKind.COMMAND_REJECTED,
                    detail=f"command {verb_text or topic_verb[:64]!r} refused: {exc.code}",
                    source="commands",
                )
            )
        else:
            self.stats.failed += 1
            _log.info("commands.failed", verb=verb_text, code=exc.code)
        reply_to = _str(env.get("reply_to")) if env is not None else None
        if exc.code == "bad_reply_to":
            reply_to = None
        return Outcome(verb_text, False, exc.code, str(exc), {}, _corr(env), reply_to, authenticated)

    async def _reply(self, msg: InboundMessage, outcome: Outcome) -> None:
        if not await self._replies.send(msg, outcome):
            self.stats.replies_lost += 1


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _first(seen: list[dict[str, Any]]) -> dict[str, Any] | None:
    return seen[0] if seen else None


def _corr(env: dict[str, Any] | None) -> str | None:
    return _str(env.get("correlation_id")) if env is not None else None
