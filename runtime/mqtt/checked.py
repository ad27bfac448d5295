"""An aiomqtt client that does not mistake a refusal for a delivery.

aiomqtt 2.x completes ``publish()`` on any PUBACK/PUBCOMP and ignores its
reason code, so a publish the broker REFUSED (MQTT 5: 0x87 not authorized by
the ACL, 0x97 quota exceeded, ...) looked delivered: the outbox marked the row
done and the event was lost (issue 10.1). :class:`CheckedClient` records the
reason code of every acknowledgement and raises :class:`MqttPublishRefused`
when it is a failure, so the caller keeps the message pending.

MQTT 3.1.1 has no reason code in PUBACK: a 3.1.1 broker that denies a publish
by ACL acknowledges it anyway (Mosquitto does), so nothing here can detect it.
That limitation is documented in docs/mqtt.md; use MQTT 5 (the default).
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

import aiomqtt
import paho.mqtt.client as paho
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from .errors import MqttPublishRefused

# The message id of the publish the current task just handed to paho. A context
# variable: publish() runs paho's (synchronous) publish in the caller's task.
_last_mid: ContextVar[int | None] = ContextVar("facegate_mqtt_last_mid", default=None)


class CheckedClient(aiomqtt.Client):
    """``aiomqtt.Client`` whose ``publish()`` raises MqttPublishRefused on a failure reason code."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # aiomqtt's own signature
        super().__init__(*args, **kwargs)
        self._refusals: dict[int, ReasonCode] = {}
        raw_publish = self._client.publish

        def publish(*a: Any, **kw: Any) -> paho.MQTTMessageInfo:  # paho's signature
            info = raw_publish(*a, **kw)
            _last_mid.set(info.mid)
            return info

        self._client.publish = publish  # type: ignore[method-assign]  # capture the mid of each publish

    def _on_publish(
        self,
        client: paho.Client,
        userdata: Any,  # paho's callback signature
        mid: int,
        reason_code: ReasonCode,
        properties: Properties,
    ) -> None:
        if reason_code.is_failure:
            self._refusals[mid] = reason_code
        else:
            self._refusals.pop(mid, None)  # a reused mid must not inherit an old refusal
        super()._on_publish(client, userdata, mid, reason_code, properties)

    async def publish(  # same call shape as aiomqtt (its decorator types it loosely)
        self,
        topic: str,
        *args: Any,
        **kwargs: Any,  # forwarded unchanged
    ) -> None:
        token = _last_mid.set(None)
        try:
            await super().publish(topic, *args, **kwargs)
            mid = _last_mid.get()
        finally:
            _last_mid.reset(token)
        if mid is None:
            return
        code = self._refusals.pop(mid, None)
        if code is not None:
            raise MqttPublishRefused(
                f"the broker refused the publish: {code.getName()} (0x{code.value:02x})",
                reason=int(code.value),
            )
