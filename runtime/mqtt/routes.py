"""Inbound routing: which handler gets a message, kept across reconnects.

:class:`MqttLink` owns one :class:`Routes`. A route is a topic filter, its QoS and a
handler. After each connect the link subscribes every route again (:meth:`Routes.subscribe_all`,
which also picks up routes changed while it waits for the broker) and runs :meth:`Routes.pump`,
which hands every received message to :meth:`Routes.dispatch`; that runs each matching
handler in turn. A handler's exception is logged (its type only) and never ends the link.
"""

from __future__ import annotations

import aiomqtt
import structlog

from .inbound import MessageHandler, from_aiomqtt
from .session import Session, guarded
from .topics import check_filter, filter_matches

_log = structlog.get_logger("facegate.mqtt")


class Routes:
    """Topic filter -> (QoS, handler), in subscription order."""

    def __init__(self) -> None:
        self._routes: dict[str, tuple[int, MessageHandler]] = {}

    def __bool__(self) -> bool:
        return bool(self._routes)

    def add(self, topic_filter: str, handler: MessageHandler, qos: int) -> None:
        """Route ``topic_filter`` to ``handler`` (replacing an earlier route); MqttTopicError if bad."""
        check_filter(topic_filter)
        self._routes[topic_filter] = (qos, handler)

    def remove(self, topic_filter: str) -> bool:
        """Drop the route; False if there was none."""
        return self._routes.pop(topic_filter, None) is not None

    def wanted(self) -> list[tuple[str, int]]:
        """(filter, QoS) of every route: what to subscribe after a connect."""
        return [(f, qos) for f, (qos, _) in self._routes.items()]

    async def subscribe_all(self, session: Session) -> None:
        """Subscribe every route on a new connection; return once the broker has them all.

        The link's ``subscribe()``/``unsubscribe()`` reach the broker only once it is
        CONNECTED, so routes added or removed while this waits for a SUBACK (or UNSUBACK)
        are picked up here: it goes round until a check finds nothing left to do. The
        caller must mark the link CONNECTED without awaiting after it returns, so that no
        change can fall between the two paths (asyncio: nothing else runs in between).
        Raises MqttNotConnected (:func:`.session.guarded`) if the connection drops.
        """
        subscribed: dict[str, int] = {}
        while True:
            wanted = dict(self.wanted())
            new = [(f, qos) for f, qos in wanted.items() if subscribed.get(f) != qos]
            gone = [f for f in subscribed if f not in wanted]
            if new:
                await guarded(session, session.client.subscribe(new))
                subscribed.update(new)
            elif gone:
                await guarded(session, session.client.unsubscribe(gone))
                for f in gone:
                    del subscribed[f]
            else:
                return

    async def pump(self, session: Session) -> None:
        """Dispatch every message ``session`` receives; when its connection ends, resolve ``session.lost``."""
        try:
            async for message in session.client.messages:
                await self.dispatch(message)
        finally:
            if not session.lost.done():
                session.lost.set_result(None)

    async def dispatch(self, message: aiomqtt.Message) -> None:
        """Run every handler whose filter matches the message's topic, one at a time."""
        inbound = from_aiomqtt(message)
        for topic_filter, (_, handler) in list(self._routes.items()):
            if not filter_matches(topic_filter, inbound.topic):
                continue
            try:
                await handler(inbound)
            except Exception as exc:  # noqa: BLE001  # a faulty handler must not kill the link
                _log.error("mqtt.handler_failed", topic_filter=topic_filter, error_type=type(exc).__name__)
