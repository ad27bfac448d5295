"""Command replies: where a reply may go, what it says, and sending it.

Replies go to the MQTT 5 response topic (with its correlation data), else to the
envelope's ``reply_to`` (MQTT 3.1.1; ``correlation_id`` echoed), else to
``<prefix>/<device id>/reply``. A command that did not authenticate is answered only
inside the device's own ``reply`` subtree (its requested topic when it lies there, else
``<prefix>/<device id>/reply``): an unauthenticated sender cannot make the device publish
on a topic of its choosing. A reply topic inside the facegate tree other than a device's
``reply`` subtree is refused (:meth:`Replies.check_reply_to`, ``bad_reply_to``), so a
command cannot make the device publish on its own event or status topics. With a reply
signer configured every reply is signed (:mod:`.reply_sig`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import structlog

from ...runtime.clock import Clock, utc_iso
from ...runtime.mqtt import InboundMessage, MqttPublishError
from ...runtime.mqtt.payloads import encode
from ...runtime.mqtt.topics import DeviceTopics, check_topic
from .errors import CommandRefused
from .reply_sig import ReplySigner, sign_reply

_log = structlog.get_logger("facegate.commands")
REPLY = "reply"


class CommandLink(Protocol):
    """What the service needs from :class:`~facegate.runtime.mqtt.MqttLink`."""

    @property
    def topics(self) -> DeviceTopics: ...

    async def subscribe(self, topic_filter: str, handler: Any, *, qos: int = 1) -> None: ...

    async def unsubscribe(self, topic_filter: str) -> None: ...

    async def publish_to(
        self,
        topic: str,
        payload: bytes,
        *,
        qos: int = 1,
        retain: bool = False,
        ack_timeout: float | None = None,
        response_topic: str | None = None,
        correlation_data: bytes | None = None,
    ) -> None: ...


@dataclass(frozen=True, slots=True)
class Outcome:
    verb: str | None
    ok: bool
    code: str
    message: str
    result: dict[str, Any]
    correlation_id: str | None
    reply_to: str | None
    authenticated: bool = False
    """False: the reply goes only into this device's own reply subtree (no reflection)."""
    replayed: bool = False
    """True: a retry answered from the result ledger; nothing actuated again (issue 10.10)."""


class Replies:
    """Reply routing and sending for one device's command service (see module doc)."""

    def __init__(self, link: CommandLink, *, clock: Clock, signer: ReplySigner | None = None) -> None:
        self._link = link
        self._topics = link.topics
        self._clock = clock
        self._signer = signer

    def check_reply_to(self, topic: object) -> None:
        """CommandRefused(``bad_reply_to``) unless ``topic`` is None or a topic a reply may go to."""
        if topic is None:
            return
        if not isinstance(topic, str):
            raise CommandRefused("reply_to must be a topic", code="bad_reply_to")
        try:
            check_topic(topic)
        except ValueError:
            raise CommandRefused("reply_to is not a valid publish topic", code="bad_reply_to") from None
        prefix = self._topics.prefix + "/"
        if topic.startswith(prefix) and not self.own_reply(topic):
            raise CommandRefused("reply_to may not point into the device topic tree", code="bad_reply_to")

    def own_reply(self, topic: str) -> bool:
        """True if ``topic`` lies in this device's own ``reply`` subtree."""
        own = f"{self._topics.base}/{REPLY}"
        return topic == own or topic.startswith(own + "/")

    async def send(self, msg: InboundMessage, outcome: Outcome) -> bool:
        """Publish the reply to ``msg``; False when the broker did not take it (logged)."""
        body: dict[str, Any] = {
            "verb": outcome.verb,
            "device_id": self._topics.device_id,
            "ok": outcome.ok,
            "code": outcome.code,
            "message": outcome.message,
            "correlation_id": outcome.correlation_id,
            "at": utc_iso(self._clock.wall()),
            "result": outcome.result,
        }
        if outcome.replayed:
            body["replayed"] = True  # the recorded outcome of an earlier delivery; nothing actuated now
        own = f"{self._topics.base}/{REPLY}"
        topic, correlation = own, msg.correlation_data
        if msg.response_topic is not None and outcome.code != "bad_reply_to":
            topic = msg.response_topic
        elif outcome.reply_to is not None:
            topic = outcome.reply_to
        if not outcome.authenticated and not self.own_reply(topic):
            # Unauthenticated: never reflect to a topic the sender chose (issue 10.9).
            topic = own
        if self._signer is not None:
            bound = correlation if correlation is not None else (outcome.correlation_id or "").encode("utf-8")
            body = sign_reply(body, bound, self._signer)
        try:
            # QoS 0 for a command that did not authenticate: a flood of junk must not make
            # the worker wait for a PUBACK per refusal (best effort is all a stranger gets).
            qos = 1 if outcome.authenticated else 0
            await self._link.publish_to(topic, encode(body), qos=qos, correlation_data=correlation)
        except MqttPublishError as exc:
            _log.warning("commands.reply_lost", verb=outcome.verb, detail=str(exc))
            return False
        return True
