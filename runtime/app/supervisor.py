"""Supervision of the device's long-lived services.

The :class:`Supervisor` runs every :class:`~facegate.runtime.service.Service`
as a task named after the service, inside one ``asyncio.TaskGroup``. A
``run()`` that raises is a crash: the supervisor waits a capped, jittered
backoff (on the injected clock) and calls ``run()`` again, forever. A
``run()`` that returns normally ends that service (state ``stopped``).

Logging follows the "each state change once" rule: a crash-restart loop is
one *failure episode*. Its first crash is logged as an error (with the
traceback); later crashes of the same episode are debug lines; the episode
ends, with one ``service.recovered`` line, once the service has run for
``healthy_after_s`` without crashing. Every transition is still counted and
visible in :meth:`Supervisor.status` for health telemetry.
"""

from __future__ import annotations

import asyncio
import random
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from types import TracebackType

import structlog

from ..backoff import Backoff
from ..bus import EventBus
from ..clock import Clock
from ..errors import RuntimeCoreError
from ..events import ComponentStateChanged
from ..service import Service, ServiceState

_log = structlog.get_logger("facegate.supervisor")


class SupervisorError(RuntimeCoreError):
    """Misuse of the supervisor (duplicate names, adding after start)."""


@dataclass
class ServiceStatus:
    """What the supervisor knows about one service (a snapshot copy for health)."""

    name: str
    state: ServiceState = ServiceState.STARTING
    restarts: int = 0
    crashes: int = 0
    last_error: str | None = None
    since: float = 0.0
    """Monotonic time of the last state change."""
    failing: bool = False
    """True during a failure episode (crashed and not yet healthy again)."""

    def as_dict(self) -> dict[str, object]:
        """JSON-ready form (no exception messages: they may carry personal data)."""
        return {
            "state": self.state.value,
            "restarts": self.restarts,
            "crashes": self.crashes,
            "last_error": self.last_error,
            "failing": self.failing,
        }


@dataclass
class _Record:
    service: Service
    status: ServiceStatus
    backoff: Backoff
    run_started: float = 0.0
    task: asyncio.Task[None] | None = field(default=None, repr=False)


class Supervisor:
    """Runs services as named tasks in one TaskGroup and restarts crashed ones.

    Use as ``async with Supervisor(...) as sup``; services added with
    :meth:`add` before entering start when the context is entered. Leaving the
    context cancels every service and waits for them; :meth:`stop` does the
    same with a time budget and reports which tasks did not finish.
    """

    def __init__(
        self,
        *,
        clock: Clock,
        bus: EventBus | None = None,
        restart_min_s: float = 0.5,
        restart_max_s: float = 30.0,
        healthy_after_s: float = 10.0,
        rng: random.Random | None = None,
    ) -> None:
        self._clock = clock
        self._bus = bus
        self._restart_min = restart_min_s
        self._restart_max = restart_max_s
        self._healthy_after = healthy_after_s
        self._rng = rng or random.Random()
        self._records: dict[str, _Record] = {}
        # A thread lock: status is read by health snapshots from any thread and
        # written from cancellation paths, where awaiting a lock is undesirable.
        self._lock = threading.Lock()
        self._tg: asyncio.TaskGroup | None = None
        self._stopping = False

    # -- configuration ------------------------------------------------------------

    def add(self, service: Service) -> None:
        """Register ``service``; it starts when the supervisor is entered (or at once if running)."""
        if service.name in self._records:
            raise SupervisorError(f"duplicate service name {service.name!r}")
        if self._stopping:
            raise SupervisorError("cannot add services while stopping")
        rec = _Record(
            service=service,
            status=ServiceStatus(name=service.name, since=self._clock.monotonic()),
            backoff=Backoff(base=self._restart_min, cap=self._restart_max, rng=self._rng),
        )
        self._records[service.name] = rec
        if self._tg is not None:
            self._start(rec)

    def extend(self, services: Iterable[Service]) -> None:
        """:meth:`add` each of ``services``."""
        for s in services:
            self.add(s)

    # -- introspection ------------------------------------------------------------

    def status(self) -> dict[str, ServiceStatus]:
        """A consistent copy of every service's status, by name."""
        with self._lock:
            return {
                name: ServiceStatus(**vars(rec.status)) for name, rec in self._records.items()
            }

    def tasks(self) -> list[asyncio.Task[None]]:
        """The live service tasks (for diagnostics and shutdown)."""
        return [r.task for r in self._records.values() if r.task is not None and not r.task.done()]

    # -- lifecycle ------------------------------------------------------------------

    async def __aenter__(self) -> Supervisor:
        self._tg = asyncio.TaskGroup()
        await self._tg.__aenter__()
        for rec in self._records.values():
            self._start(rec)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._tg is not None
        self._stopping = True
        for task in self.tasks():
            task.cancel()
        tg, self._tg = self._tg, None
        # The body's own exception propagates unchanged (not wrapped in a group):
        # the service tasks have been cancelled and only need awaiting.
        await tg.__aexit__(None, None, None)

    async def stop(self, budget_s: float, *, abort: asyncio.Event | None = None) -> list[str]:
        """Cancel every service and wait up to ``budget_s`` (injected clock) for them.

        Returns the names of tasks still running when the budget ran out or
        ``abort`` was set (empty on a clean stop). The caller decides what the
        forced path does next.
        """
        self._stopping = True
        tasks = self.tasks()
        for rec in self._records.values():
            if rec.task is not None and not rec.task.done():
                self._set_state(rec, ServiceState.STOPPING)
        for task in tasks:
            task.cancel()
        if not tasks:
            return []
        # The deadline is fixed now, not when the timer task first runs.
        timer = asyncio.create_task(
            self._sleep_until(self._clock.monotonic() + budget_s), name="supervisor.stop.budget"
        )
        stops: set[asyncio.Future[None]] = {timer}
        if abort is not None:
            stops.add(asyncio.create_task(_wait_event(abort), name="supervisor.stop.abort"))
        pending: set[asyncio.Future[None]] = set(tasks)
        try:
            while pending and not any(f.done() for f in stops):
                _, pending = await asyncio.wait(
                    pending | stops, return_when=asyncio.FIRST_COMPLETED
                )
                pending -= stops
        finally:
            for f in stops:
                f.cancel()
            # asyncio.wait, not `suppress(CancelledError): await f`: that would also
            # swallow a cancellation of the caller arriving while the helpers unwind.
            await asyncio.wait(stops)
        return sorted(t.get_name() for t in tasks if not t.done())

    async def _sleep_until(self, deadline: float) -> None:
        await self._clock.sleep(deadline - self._clock.monotonic())

    def cancel_all(self) -> None:
        """Cancel every live service task again (the forced path interrupts stuck cleanup)."""
        for task in self.tasks():
            task.cancel()

    # -- internals ------------------------------------------------------------------

    def _start(self, rec: _Record) -> None:
        assert self._tg is not None
        rec.task = self._tg.create_task(self._supervise(rec), name=rec.service.name)

    def _set_state(self, rec: _Record, state: ServiceState, *, announce: bool = False) -> None:
        with self._lock:
            if rec.status.state is state:
                return
            rec.status.state = state
            rec.status.since = self._clock.monotonic()
        if announce and self._bus is not None:
            self._bus.publish(
                ComponentStateChanged(
                    at=self._clock.wall(), component=rec.service.name, state=state.value
                )
            )

    async def _supervise(self, rec: _Record) -> None:
        try:
            await self._supervise_loop(rec)
        except asyncio.CancelledError:
            self._set_state(rec, ServiceState.STOPPED)
            raise

    async def _supervise_loop(self, rec: _Record) -> None:
        name = rec.service.name
        first = True
        while True:
            rec.run_started = self._clock.monotonic()
            self._set_state(rec, ServiceState.RUNNING, announce=first)
            if first:
                _log.info("service.started", task_name=name)
                first = False
            try:
                async with asyncio.TaskGroup() as tg:
                    # The recovery watch lives beside run() so that a long healthy
                    # run ends the failure episode without waiting for the next crash.
                    watch = tg.create_task(self._watch_recovery(rec), name=f"{name}.recovery")
                    await rec.service.run()
                    watch.cancel()
            except BaseExceptionGroup as group:
                await self._crashed(rec, _first_error(group))
                continue
            self._set_state(rec, ServiceState.STOPPED, announce=True)
            _log.info("service.finished", task_name=name)
            return

    async def _watch_recovery(self, rec: _Record) -> None:
        await self._clock.sleep(self._healthy_after)
        rec.backoff.reset()
        with self._lock:
            was_failing, rec.status.failing = rec.status.failing, False
        if was_failing:
            _log.info("service.recovered", task_name=rec.service.name, restarts=rec.status.restarts)
            self._announce(rec, "recovered")

    async def _crashed(self, rec: _Record, exc: BaseException) -> None:
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            raise exc
        name = rec.service.name
        with self._lock:
            rec.status.crashes += 1
            rec.status.last_error = type(exc).__name__
            new_episode = not rec.status.failing
            rec.status.failing = True
        delay = rec.backoff.next_delay()
        if new_episode:
            _log.error(
                "service.crashed",
                task_name=name,
                error_type=type(exc).__name__,
                retry_in_s=round(delay, 3),
                exc_info=exc,
            )
        else:
            _log.debug("service.crashed_again", task_name=name, error_type=type(exc).__name__)
        self._set_state(rec, ServiceState.BACKOFF, announce=new_episode)
        await self._clock.sleep(delay)
        with self._lock:
            rec.status.restarts += 1

    def _announce(self, rec: _Record, state: str) -> None:
        if self._bus is not None:
            self._bus.publish(
                ComponentStateChanged(at=self._clock.wall(), component=rec.service.name, state=state)
            )


async def _wait_event(event: asyncio.Event) -> None:
    await event.wait()


def _first_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The first leaf exception of a (possibly nested) exception group."""
    exc: BaseException = group
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc
