"""The Device: one running facegate unit, as an async context manager.

``async with Device(loaded) as device: await device.wait_shutdown()``

Entering runs the composition root (:mod:`.root`): phase 1 opens the
resources (store, GPIO driver, engine, policy, broker), phase 2 builds every
service from them; then it starts every service under the
:class:`~facegate.runtime.app.supervisor.Supervisor` (one TaskGroup of named
tasks), then sets :attr:`Device.started` (the watchdog sends READY=1 on it).
SIGINT and SIGTERM request a shutdown; a second one skips the rest of the
graceful budget.

Leaving, for any reason (shutdown request, exception in the body, the
device task being cancelled), runs the shutdown sequence:

1. stopping hooks (sd_notify ``STOPPING=1``);
2. graceful path: every service is cancelled and given
   ``lifecycle.shutdown_grace_s`` (injected clock) to finish its cleanup;
3. forced path, only if some task is still running: the safe state is
   entered at once, the stragglers are cancelled again and given
   :attr:`Device.force_s` more; :class:`ShutdownTimeoutError` is raised at
   the end (unless another exception is already propagating);
4. on both paths ``enter_safe_state()`` runs on every SafeOutput, then the
   resources close (so the relay line is released in its safe level).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Awaitable, Callable, Mapping
from types import TracebackType

import structlog

from ..bus import EventBus
from ..clock import Clock, SystemClock
from ..config import DeviceConfig, LoadedConfig
from ..errors import ShutdownTimeoutError
from ..health import HealthMonitor
from .root import Context, Parts, build
from .supervisor import Supervisor

_log = structlog.get_logger("facegate.device")

Builder = Callable[[Context, contextlib.AsyncExitStack], Awaitable[Parts]]
"""Opens resources on the stack and returns the built parts (default :func:`.root.build`)."""


class Device:
    """Owns the clock, bus, config, supervisor, services, safe outputs and resources."""

    force_s: float = 1.0
    """Extra budget of the forced path, after the graceful budget ran out."""

    def __init__(
        self,
        loaded: LoadedConfig,
        *,
        clock: Clock | None = None,
        bus: EventBus | None = None,
        builder: Builder = build,
        handle_signals: bool = True,
        environ: Mapping[str, str] | None = None,
        repair: bool = False,
    ) -> None:
        self.loaded = loaded
        self.clock: Clock = clock or SystemClock()
        self.bus = bus or EventBus()
        lifecycle = loaded.config.lifecycle
        self.supervisor = Supervisor(
            clock=self.clock,
            bus=self.bus,
            restart_min_s=lifecycle.restart_min_s,
            restart_max_s=lifecycle.restart_max_s,
        )
        self.health = HealthMonitor(
            clock=self.clock,
            bus=self.bus,
            supervisor=self.supervisor,
            device_id=loaded.config.device.id,
        )
        self.started = asyncio.Event()
        self.forced = False
        self.shutdown_reason: str | None = None
        self._builder = builder
        self._handle_signals = handle_signals
        self._environ = os.environ if environ is None else environ
        self._repair = repair
        self._shutdown = asyncio.Event()
        self._force = asyncio.Event()
        self._signals: list[signal.Signals] = []
        self._resources = contextlib.AsyncExitStack()
        self._sup_entered = False
        self._parts: Parts | None = None

    @property
    def parts(self) -> Parts:
        """The device's typed parts; raises RuntimeError before the device was entered."""
        if self._parts is None:
            raise RuntimeError("the device is not started: enter it first")
        return self._parts

    @property
    def config(self) -> DeviceConfig:
        """The validated config this device runs."""
        return self.loaded.config

    # -- shutdown requests ----------------------------------------------------------

    def request_shutdown(self, reason: str = "requested") -> None:
        """Ask the device to stop; a second request forces it. Safe from signal handlers."""
        if self._shutdown.is_set():
            # A second request (a second Ctrl-C) skips the rest of the graceful budget.
            _log.warning("device.shutdown_force_requested", reason=reason)
            self._force.set()
            return
        self.shutdown_reason = reason
        _log.info("device.shutdown_requested", reason=reason)
        self._shutdown.set()

    async def wait_shutdown(self) -> str:
        """Wait until a shutdown is requested; return the reason."""
        await self._shutdown.wait()
        return self.shutdown_reason or "requested"

    # -- lifecycle --------------------------------------------------------------------

    async def __aenter__(self) -> Device:
        ctx = Context(
            loaded=self.loaded,
            clock=self.clock,
            bus=self.bus,
            health=self.health,
            started=self.started,
            environ=self._environ,
            repair=self._repair,
        )
        self._install_signals()
        try:
            self._parts = await self._builder(ctx, self._resources)
            self.supervisor.extend(self._parts.services)
            await self.supervisor.__aenter__()
            self._sup_entered = True
            # One loop pass lets every service run up to its first await, so that
            # "started" means subscriptions exist and command APIs are usable.
            await asyncio.sleep(0)
        except BaseException:
            await self._teardown(forced=False)
            raise
        self.started.set()
        _log.info(
            "device.started",
            services=[s.name for s in self._parts.services],
            config_digest=self.loaded.digest,
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is not None and not isinstance(exc, asyncio.CancelledError):
            _log.error("device.crashed", error_type=type(exc).__name__)
        forced = await self._teardown(forced=False)
        if forced and exc is None:
            raise ShutdownTimeoutError(
                f"services did not stop within {self.config.lifecycle.shutdown_grace_s} s"
            )

    async def _teardown(self, *, forced: bool) -> bool:
        """Stop services, enter the safe state, close resources. Returns True if forced."""
        try:
            for hook in self._parts.on_stopping if self._parts is not None else ():
                _call_quietly(hook)
            if self._sup_entered:
                forced = await self._stop_services()
        finally:
            # Whatever happened above (even cancellation of this task), outputs go safe
            # before the resources that drive them are released.
            self._enter_safe_state()
            try:
                await self._resources.aclose()
            finally:
                self._remove_signals()
                _log.info("device.stopped", forced=forced)
        return forced

    async def _stop_services(self) -> bool:
        grace = self.config.lifecycle.shutdown_grace_s
        stuck = await self.supervisor.stop(grace, abort=self._force)
        forced = bool(stuck)
        if stuck:
            self.forced = True
            _log.error("device.shutdown_forced", grace_s=grace, stuck_tasks=stuck)
            self._enter_safe_state()
            stuck = await self.supervisor.stop(self.force_s)
        if stuck:
            # A task that swallows cancellation breaks the Service contract; leaving
            # its TaskGroup would hang, so it is abandoned (outputs are already safe).
            _log.critical("device.tasks_unstoppable", stuck_tasks=stuck)
        else:
            self._sup_entered = False
            await self.supervisor.__aexit__(None, None, None)
        return forced

    def _enter_safe_state(self) -> None:
        for output in self._parts.safe_outputs if self._parts is not None else ():
            _call_quietly(output.enter_safe_state)

    def _install_signals(self) -> None:
        if not self._handle_signals:
            return
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.request_shutdown, sig.name)
            self._signals.append(sig)

    def _remove_signals(self) -> None:
        loop = asyncio.get_running_loop()
        while self._signals:
            loop.remove_signal_handler(self._signals.pop())


def _call_quietly(fn: Callable[[], None]) -> None:
    """Run a shutdown hook; a failing hook is logged and must not stop the others."""
    try:
        fn()
    except Exception:  # noqa: BLE001  # every safe output must be reached regardless
        _log.exception("device.shutdown_hook_failed", hook=getattr(fn, "__qualname__", "?"))
