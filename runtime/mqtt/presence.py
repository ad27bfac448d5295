"""The device's presence on its retained status topic: birth, offline, and nothing once decommissioned.

After every connect the link publishes the retained birth message (:func:`.payloads.birth`);
the broker publishes the Last Will when the connection dies; on a clean shutdown the link
publishes the retained ``offline`` status itself, bounded in time, before it disconnects.
After a remote ``destroy`` (:attr:`Presence.decommissioned`) both are empty retained
messages, which delete the status instead of announcing the device.
"""

from __future__ import annotations

import asyncio

import aiomqtt
import structlog

from ..clock import Clock
from . import payloads
from .errors import MqttPublishRefused
from .payloads import Identity
from .refusals import RefusalAlarm
from .session import Session, describe, guarded
from .topics import DeviceTopics

_log = structlog.get_logger("facegate.mqtt")


class Presence:
    """Birth and offline status of one device on one link."""

    def __init__(
        self,
        topics: DeviceTopics,
        identity: Identity,
        *,
        clock: Clock,
        refusals: RefusalAlarm,
        offline_timeout_s: float,
    ) -> None:
        self._topics = topics
        self.identity = identity
        self._clock = clock
        self._refusals = refusals
        self._offline_timeout = offline_timeout_s
        self.decommissioned = False
        """Set by a remote ``destroy``: the status topic is left empty (no birth, no offline status)."""

    def will(self) -> aiomqtt.Will:
        """The Last Will the broker publishes when the connection dies."""
        return aiomqtt.Will(self._topics.status, payloads.will(self.identity), qos=1, retain=True)

    async def born(self, session: Session) -> None:
        """Publish the retained birth message; an ACL refusal raises the alarm, the link stays online."""
        birth = payloads.birth(self.identity, connected_at=self._clock.wall())
        birth = b"" if self.decommissioned else birth
        try:
            await guarded(session, session.client.publish(self._topics.status, birth, qos=1, retain=True))
        except MqttPublishRefused as exc:
            await self._refusals.on_refused(self._topics.status, exc)

    async def offline(self, session: Session) -> None:
        """Clean shutdown: publish the retained offline status, bounded in time."""
        body = payloads.offline(self.identity, at=self._clock.wall())
        body = b"" if self.decommissioned else body  # empty retained = deleted
        try:
            async with asyncio.timeout(self._offline_timeout):
                await session.client.publish(self._topics.status, body, qos=1, retain=True)
        except (aiomqtt.MqttError, MqttPublishRefused, TimeoutError) as exc:
            _log.warning("mqtt.link.offline_not_confirmed", detail=describe(exc))
