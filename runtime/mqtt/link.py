"""The MQTT connection manager: one aiomqtt connection kept alive forever.

aiomqtt neither reconnects nor buffers, so :class:`MqttLink` does both jobs a
device needs:

* it (re)connects with capped, jittered backoff (:mod:`facegate.runtime.backoff`,
  slept on the injected clock), registers the Last Will, publishes the
  retained birth message and re-subscribes after every connect;
* it keeps a :class:`LinkState` guarded by a lock, logs each change once
  (the first failure and the recovery, never every retry) and publishes a
  :class:`~facegate.runtime.events.ComponentStateChanged` per change
  (:mod:`.state`); it remembers when each connection was lost
  (:meth:`MqttLink.lost_at`, the outbox's redelivery window);
* on cancellation (clean shutdown) it publishes the retained ``offline``
  status itself, bounded in time, then disconnects (so the will does not fire).

Publishing never buffers: :meth:`MqttLink.publish` waits for the broker's
acknowledgement (PUBACK for QoS 1) or raises a :class:`MqttPublishError`.
The durable outbox (issue 6) owns buffering and resending on top of this.

Neighbours: :mod:`.options` (client options), :mod:`.session` (open/close a client),
:mod:`.routes` (inbound handlers), :mod:`.presence` (birth/offline); ``runtime.app.mqtt_parts`` builds it.
"""

from __future__ import annotations

import asyncio
import random
from types import TracebackType
from typing import Self

import aiomqtt
import structlog

from ..backoff import Backoff
from ..bus import EventBus
from ..clock import Clock
from ..config.loader import LoadedConfig
from .errors import MqttConnectError, MqttNotConnected, MqttPublishError, MqttPublishRefused
from .inbound import InboundMessage, MessageHandler
from .options import ClientOptions, client_options
from .payloads import Identity
from .presence import Presence
from .refusals import RefusalAlarm
from .routes import Routes
from .session import Session, close_client, describe, guarded, new_future, open_client
from .state import LinkState, StateTracker
from .telemetry import SnapshotProvider, TelemetryPublisher
from .topics import DeviceTopics, check_topic

_log = structlog.get_logger("facegate.mqtt")

__all__ = ["InboundMessage", "LinkState", "MessageHandler", "MqttLink"]


class MqttLink:
    """Supervised Service keeping the device's broker connection, presence and telemetry.

    Use it under the Device supervisor (``run()``) or as ``async with link:``.
    ``run()`` only returns by cancellation; a raised exception is a bug the
    supervisor restarts.
    """

    def __init__(
        self,
        options: ClientOptions,
        *,
        topics: DeviceTopics,
        identity: Identity,
        clock: Clock,
        bus: EventBus | None = None,
        telemetry: SnapshotProvider | None = None,
        telemetry_interval_s: float = 30.0,
        reconnect_min_s: float = 0.5,
        reconnect_max_s: float = 30.0,
        offline_timeout_s: float = 2.0,
        rng: random.Random | None = None,
        name: str = "mqtt.link",
    ) -> None:
        self._options = options
        self._topics = topics
        self._clock = clock
        self._bus = bus
        self._name = name
        self._backoff = Backoff(base=reconnect_min_s, cap=reconnect_max_s, rng=rng or random.Random())
        self._states = StateTracker(name, clock=clock, bus=bus)
        self.refusals = RefusalAlarm(topics, clock=clock, bus=bus, name=name)
        """Refused-publish alarm (issue 10.1); see :mod:`.refusals`."""
        self._presence = Presence(
            topics, identity, clock=clock, refusals=self.refusals, offline_timeout_s=offline_timeout_s
        )
        self._will = self._presence.will()
        self._session: Session | None = None
        self._sessions = 0
        self._lost_at: dict[int, float] = {}
        self._routes = Routes()
        self._telemetry = None if telemetry is None else TelemetryPublisher(
            self, telemetry, interval_s=telemetry_interval_s, clock=clock
        )
        self._runner: asyncio.TaskGroup | None = None
        self._run_task: asyncio.Task[None] | None = None
        self._endpoint_index = 0
        self._in_flight = 0

    @classmethod
    def from_config(
        cls,
        loaded: LoadedConfig,
        *,
        clock: Clock,
        bus: EventBus | None = None,
        telemetry: SnapshotProvider | None = None,
        started_at: float | None = None,
        offline_timeout_s: float = 2.0,
        rng: random.Random | None = None,
    ) -> MqttLink:
        """Build a link from a loaded config. Raises MqttTlsConfigError for unusable TLS files."""
        cfg = loaded.config
        m = cfg.mqtt
        return cls(
            client_options(m, device_id=cfg.device.id),
            topics=DeviceTopics(m.topic_prefix, cfg.device.id),
            identity=Identity(
                device_id=cfg.device.id,
                site=cfg.device.site,
                config_digest=loaded.digest,
                started_at=clock.wall() if started_at is None else started_at,
            ),
            clock=clock,
            bus=bus,
            telemetry=telemetry,
            telemetry_interval_s=m.telemetry_interval_s,
            reconnect_min_s=m.reconnect_min_s,
            reconnect_max_s=m.reconnect_max_s,
            offline_timeout_s=offline_timeout_s,
            rng=rng,
        )

    # -- public surface ---------------------------------------------------------------

    @property
    def name(self) -> str:
        """Service name (``mqtt.link``); sub-tasks are named ``<name>.<part>``."""
        return self._name

    @property
    def state(self) -> LinkState:
        """Current connection state."""
        return self._states.state

    @property
    def topics(self) -> DeviceTopics:
        """This device's topics."""
        return self._topics

    @property
    def endpoint(self) -> str:
        """``host:port`` of the broker endpoint in use (or tried next while disconnected)."""
        host, port = self._options.all_endpoints[self._endpoint_index]
        return f"{host}:{port}"

    @property
    def identity(self) -> Identity:
        """What the birth message reports."""
        return self._presence.identity

    @property
    def options(self) -> ClientOptions:
        """The resolved connection options (repr masks the password)."""
        return self._options

    @property
    def telemetry(self) -> TelemetryPublisher | None:
        """The periodic telemetry publisher, when the link was given a snapshot provider."""
        return self._telemetry

    @property
    def connection_number(self) -> int:
        """How many connections have gone online so far (a resend trigger for the outbox)."""
        return self._sessions

    def lost_at(self, number: int) -> float | None:
        """Wall time (injected clock) when connection ``number`` was lost, if it went online and ended.

        The outbox uses it to republish what the broker acknowledged just before
        it vanished (its redelivery window). The last 32 connections are kept.
        """
        return self._lost_at.get(number)

    async def wait_connected(self) -> None:
        """Return once the link is CONNECTED (immediately if it is)."""
        await self._states.connected.wait()

    async def publish(
        self,
        suffix: str,
        payload: bytes,
        *,
        qos: int = 1,
        retain: bool = False,
        ack_timeout: float | None = None,
        response_topic: str | None = None,
        correlation_data: bytes | None = None,
    ) -> None:
        """Publish on ``<prefix>/<device_id>/<suffix>`` and wait for the broker's acknowledgement.

        QoS 1/2 return after PUBACK/PUBCOMP; QoS 0 after the packet is written.
        Raises MqttTopicError for a bad suffix, MqttNotConnected when offline or
        when the connection drops before the acknowledgement, MqttPublishTimeout
        when no acknowledgement arrives in ``ack_timeout`` seconds (default 10).
        ``response_topic``/``correlation_data`` are sent as MQTT 5 properties and
        ignored under MQTT 3.1.1. Nothing is buffered: retrying is the caller's job.
        """
        await self.publish_to(
            self._topics.topic(suffix),
            payload,
            qos=qos,
            retain=retain,
            ack_timeout=ack_timeout,
            response_topic=response_topic,
            correlation_data=correlation_data,
        )

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
    ) -> None:
        """Like :meth:`publish` with a full topic (command replies to a ``reply_to`` topic)."""
        check_topic(topic)
        if qos not in (0, 1, 2):
            raise ValueError(f"qos must be 0, 1 or 2, not {qos!r}")
        session = self._session
        state = self._states.state
        if session is None or state is not LinkState.CONNECTED:
            raise MqttNotConnected(f"not connected (state {state.value})")
        props = self._options.publish_properties(response_topic, correlation_data)
        call = session.client.publish(
            topic, bytes(payload), qos=qos, retain=retain, properties=props, timeout=ack_timeout
        )
        self._in_flight += 1
        try:
            try:
                await guarded(session, call)
            finally:
                self._in_flight -= 1
        except MqttPublishRefused as exc:  # MQTT 5: the broker said no (ACL): not delivered
            await self.refusals.on_refused(topic, exc)
            raise
        await self.refusals.on_accepted(topic)

    def health(self) -> dict[str, int | str]:
        """Telemetry source ``mqtt``: whether the broker accepts this device's publishes, and
        ``publish_in_flight``, the :meth:`publish_to` calls handed to the client and not yet
        acknowledged (or failed): a broker that stops answering shows as a count that stays up."""
        return self.refusals.health() | {"publish_in_flight": self._in_flight}

    async def subscribe(self, topic_filter: str, handler: MessageHandler, *, qos: int = 1) -> None:
        """Route messages matching ``topic_filter`` to ``handler``, now and after every reconnect.

        Handlers run one at a time in the link's inbound task: they must be quick
        (enqueue work elsewhere). A handler's exception is logged, never fatal.
        """
        self._routes.add(topic_filter, handler, qos)
        session = self._session
        if session is not None and self._states.state is LinkState.CONNECTED:
            await guarded(session, session.client.subscribe(topic_filter, qos))

    async def unsubscribe(self, topic_filter: str) -> None:
        """Stop routing ``topic_filter`` (and unsubscribe at the broker if connected)."""
        if not self._routes.remove(topic_filter):
            return
        session = self._session
        if session is not None and self._states.state is LinkState.CONNECTED:
            await guarded(session, session.client.unsubscribe(topic_filter))

    async def run(self) -> None:
        """Keep the connection (and telemetry) going until cancelled."""
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._connection_loop(), name=f"{self._name}.connection")
                if self._telemetry is not None:
                    tg.create_task(self._telemetry.run(), name=f"{self._name}.telemetry")
        finally:
            await self._states.set(LinkState.CLOSED)

    async def __aenter__(self) -> Self:
        if self._runner is not None:
            raise RuntimeError("MqttLink is already running")
        self._runner = asyncio.TaskGroup()
        await self._runner.__aenter__()
        self._run_task = self._runner.create_task(self.run(), name=self._name)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        runner, task = self._runner, self._run_task
        self._runner = self._run_task = None
        assert runner is not None and task is not None
        task.cancel()
        await runner.__aexit__(exc_type, exc, tb)

    # -- connection machinery -----------------------------------------------------------

    async def _connection_loop(self) -> None:
        self._states.failures = 0
        await self._states.set(LinkState.CONNECTING)
        while True:
            try:
                await self._connect_once()
            except MqttConnectError as exc:
                detail = str(exc)
            else:  # pragma: no cover - _connect_once only ends by raising
                detail = "connection ended"
            await self._states.failed(detail)
            self._fail_over()
            delay = self._backoff.next_delay()
            _log.debug(
                "mqtt.link.retry", attempt=self._states.failures, delay_s=round(delay, 3), detail=detail
            )
            await self._clock.sleep(delay)

    def _fail_over(self) -> None:
        """After a failed or lost connection, the next attempt goes to the next endpoint."""
        endpoints = self._options.all_endpoints
        if len(endpoints) > 1:
            previous = self.endpoint
            self._endpoint_index = (self._endpoint_index + 1) % len(endpoints)
            _log.info("mqtt.link.failover", previous=previous, next=self.endpoint)

    async def _connect_once(self) -> None:
        """One connection from CONNECT to its end; raises MqttConnectError when it fails or drops."""
        endpoint = self._options.all_endpoints[self._endpoint_index]
        client = await open_client(self._options, self._will, endpoint)
        session = Session(client=client, number=self._sessions + 1, lost=new_future())
        self._session = session
        try:
            await self._run_session(session)
        except asyncio.CancelledError:
            await self._say_offline(session)
            raise
        except (aiomqtt.MqttError, MqttPublishError) as exc:
            raise MqttConnectError(f"connection lost: {describe(exc)}") from exc
        finally:
            self._session = None
            if self._sessions == session.number:  # it went online: remember when it ended
                self._lost_at[session.number] = self._clock.wall()
                self._lost_at.pop(session.number - 32, None)
            if not session.lost.done():
                session.lost.set_result(None)
            await close_client(client)

    async def _run_session(self, session: Session) -> None:
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._routes.pump(session), name=f"{self._name}.inbound")
                await self._go_online(session)
        except ExceptionGroup as group:
            # The inbound task ends only when the connection drops: unwrap that cause.
            first = group.exceptions[0]
            if len(group.exceptions) == 1 and isinstance(first, aiomqtt.MqttError | MqttPublishError):
                raise first from None
            raise

    @property
    def decommissioned(self) -> bool:
        """Set by a remote ``destroy``: the status topic is left empty (no birth, no offline status)."""
        return self._presence.decommissioned

    @decommissioned.setter
    def decommissioned(self, value: bool) -> None:
        self._presence.decommissioned = value

    async def _go_online(self, session: Session) -> None:
        await self._presence.born(session)
        await self._routes.subscribe_all(session)
        # No await until CONNECTED: a route changed from here on is sent by subscribe() itself.
        self._sessions = session.number
        self._backoff.reset()
        await self._states.set(LinkState.CONNECTED, f"session {session.number}")

    async def _say_offline(self, session: Session) -> None:
        """Clean shutdown: publish the retained offline status, bounded in time."""
        if self._states.state is not LinkState.CONNECTED:
            return
        await self._states.set(LinkState.CLOSING, "shutdown")
        await self._presence.offline(session)
