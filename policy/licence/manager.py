"""The device's licence: evaluated at start and periodically, installed atomically, enforced.

:class:`LicenceManager` is the component ``licence``: a resource (``async with`` evaluates the
installed licence before recognition loads its gallery) and a service (``run`` re-evaluates
every ``check_interval_s`` and persists the clock high-water mark). Each state change is logged
once, audited in the hash chain, raised as ``event/security`` for tamper states and handed to
the listeners (the MQTT reporter). Recognition and enrolment ask :meth:`recognition_allowed`
and :meth:`check_enrolment`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import structlog

from ...runtime.bus import EventBus
from ...runtime.clock import Clock, utc_iso
from ...runtime.events import SecurityEvent, SecurityKind
from ...storage.audit import AuditAction
from .clockguard import ClockGuard
from .document import trust_list
from .errors import LicenceNotInstalled, LicenceRequired
from .files import read_optional, remove, write_atomic
from .fingerprint import Fingerprint, device_fingerprint
from .state import LicenceState, LicenceStatus, evaluate

if TYPE_CHECKING:
    from ...runtime.config.licence import LicenceSection
    from ...storage import Store

_log = structlog.get_logger("facegate.licence")
Listener = Callable[[LicenceStatus], None]
_LAST = "licence.last_state"
INSTALLABLE = frozenset({LicenceState.VALID, LicenceState.GRACE, LicenceState.NOT_YET_VALID})


class LicenceManager:
    """Component and service ``licence`` (constructor-injected; see module doc)."""

    def __init__(
        self,
        cfg: LicenceSection,
        *,
        store: Store,
        bus: EventBus,
        clock: Clock,
        cameras: int = 1,
        fingerprint: Fingerprint | None = None,
    ) -> None:
        self.cfg = cfg
        self._store = store
        self._bus = bus
        self._clock = clock
        self._cameras = cameras
        self._trusted = trust_list(cfg.vendor_keys)
        self._guard = ClockGuard(store)
        self._fp = fingerprint
        self._lock = asyncio.Lock()
        self._status: LicenceStatus | None = None
        self._override: tuple[LicenceState, str] | None = None
        self.listeners: list[Listener] = []
        self.seat: dict[str, Any] = {}
        self.timings_ms: dict[str, float] = {}

    @property
    def name(self) -> str:
        return "licence"

    @property
    def path(self) -> Path:
        return self.cfg.file

    @property
    def fingerprint(self) -> Fingerprint:
        if self._fp is None:
            raise RuntimeError("licence manager is not open yet")
        return self._fp

    @property
    def status(self) -> LicenceStatus:
        if self._status is None:
            raise RuntimeError("licence manager is not open yet")
        return self._status

    def recognition_allowed(self) -> bool:
        """True only with a usable licence whose camera limit this device respects."""
        status = self._status
        return status is not None and status.state.usable and self._cameras_ok(status)

    def _cameras_ok(self, status: LicenceStatus) -> bool:
        cap = status.feature_int("max_cameras")
        return cap is None or self._cameras <= cap

    def check_enrolment(self, subjects: int) -> None:
        """Raise LicenceRequired unless one more subject may be enrolled."""
        status = self._status
        if status is None or not status.state.usable:
            state = "missing" if status is None else status.state.value
            raise LicenceRequired(
                f"enrolment needs a usable licence (licence state: {state})", code="licence_required"
            )
        cap = status.feature_int("max_subjects")
        if cap is not None and subjects >= cap:
            raise LicenceRequired(
                f"the licence allows {cap} enrolled subjects and {subjects} are enrolled",
                code="licence_max_subjects",
            )

    async def admit_enrolment(self, subject_id: str | None) -> None:
        """:meth:`check_enrolment` against the subjects holding templates (a known subject is free)."""
        self.check_enrolment(await self._store.subjects.count_with_templates(except_subject=subject_id))

    # -- lifecycle -------------------------------------------------------------------------

    async def __aenter__(self) -> LicenceManager:
        t0 = time.perf_counter()
        if self._fp is None:
            self._fp = await device_fingerprint(
                self.cfg.deployment, salt=self.cfg.salt, root=self.cfg.identifier_root, store=self._store
            )
        t1 = time.perf_counter()
        await self._guard.load()
        if self._guard.unreadable:
            _log.error("licence.clock_mark_unreadable", effect="rollback detection restarts from now")
            self._security(LicenceState.CLOCK_ROLLBACK, "the sealed clock mark does not authenticate")
        await self.check()
        t2 = time.perf_counter()
        self.timings_ms = {"fingerprint_ms": (t1 - t0) * 1e3, "evaluate_ms": (t2 - t1) * 1e3}
        status = self.status
        if not self._cameras_ok(status):
            _log.error(
                "licence.max_cameras_exceeded",
                cameras=self._cameras,
                max_cameras=status.feature_int("max_cameras"),
                effect="recognition disabled",
            )
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None

    async def run(self) -> None:
        while True:
            await self._clock.sleep(self.cfg.check_interval_s)
            await self.check()

    # -- evaluation ------------------------------------------------------------------------

    async def check(self) -> LicenceStatus:
        """Re-read and re-evaluate the installed licence; persist the clock mark."""
        blob = await asyncio.to_thread(read_optional, self.cfg.file)
        async with self._lock:
            now = self._clock.wall()
            status = self._evaluate(blob, now)
            if status.state is not LicenceState.CLOCK_ROLLBACK:
                await self._guard.observe(now)
            await self._set(status)
            return status

    def _evaluate(self, blob: bytes | None, now: float) -> LicenceStatus:
        status = evaluate(
            blob,
            trusted=self._trusted,
            fingerprint=self.fingerprint,
            now=now,
            high_water=self._guard.high_water,
            tolerance_s=self.cfg.clock_tolerance_s,
        )
        if self._override is not None and status.state is not LicenceState.CLOCK_ROLLBACK:
            state, detail = self._override
            status = LicenceStatus(state=state, fingerprint=status.fingerprint, detail=detail)
        if self.seat:
            status = LicenceStatus(**{**_fields(status), "seat": dict(self.seat)})
        return status

    async def _set(self, status: LicenceStatus) -> None:
        old = self._status
        self._status = status
        if old is not None and (old.state, old.licence_id, old.not_after) == (
            status.state,
            status.licence_id,
            status.not_after,
        ):
            if old.seat != status.seat:
                self._notify(status)
            return
        _log.info(
            "licence.state",
            state=status.state.value,
            previous=None if old is None else old.state.value,
            licence_id=status.licence_id,
            detail=status.detail,
        )
        mark = f"{status.state.value}|{status.licence_id or ''}"
        if await self._store.kv.get(_LAST) != mark:  # audit changes, not every start-up or CLI call
            async with self._store.transaction() as tx:
                await self._store.audit(
                    tx,
                    actor="licence",
                    action=AuditAction.LICENCE_CHANGE,
                    detail={"state": status.state.value, "licence_id": status.licence_id},
                )
                await self._store.kv.set_in(tx, _LAST, mark)
        if status.state.tamper:
            self._security(status.state, status.detail)
        self._notify(status)

    def _security(self, state: LicenceState, detail: str) -> None:
        kind = (
            SecurityKind.CLOCK_ROLLBACK
            if state is LicenceState.CLOCK_ROLLBACK
            else SecurityKind.LICENCE_TAMPER
        )
        self._bus.publish(
            SecurityEvent(
                at=self._clock.wall(), kind=kind, source="licence", detail=f"{state.value}: {detail}"
            )
        )

    def _notify(self, status: LicenceStatus) -> None:
        for listener in list(self.listeners):
            listener(status)

    # -- install ---------------------------------------------------------------------------

    async def install(self, blob: bytes) -> dict[str, Any]:
        """Verify ``blob`` for this device, then replace the licence file atomically.

        A licence that is not valid here (bad signature, untrusted key, another device,
        expired) is refused with its state as the error code and leaves the old one in force;
        tamper states also raise a security event.
        """
        async with self._lock:
            candidate = evaluate(
                blob,
                trusted=self._trusted,
                fingerprint=self.fingerprint,
                now=self._clock.wall(),
                high_water=self._guard.high_water,
                tolerance_s=self.cfg.clock_tolerance_s,
            )
            if candidate.state not in INSTALLABLE:
                _log.warning("licence.install_refused", state=candidate.state.value, detail=candidate.detail)
                if candidate.state.tamper:
                    self._security(candidate.state, f"install refused: {candidate.detail}")
                raise LicenceNotInstalled(
                    f"licence not installed ({candidate.state.value}): {candidate.detail}",
                    code=candidate.state.value,
                )
            await asyncio.to_thread(write_atomic, self.cfg.file, blob)
            self._override = None
        status = await self.check()
        return {"state": status.state.value, "licence_id": status.licence_id}

    # -- seat service hooks ----------------------------------------------------------------

    async def apply_lease(self, lease: bytes | None, *, override: tuple[LicenceState, str] | None) -> None:
        """Seat client: store a new lease (or drop it) and/or force a service-given state."""
        async with self._lock:
            if lease is not None:
                await asyncio.to_thread(write_atomic, self.cfg.file, lease)
            elif override is not None and override[0] is LicenceState.REVOKED:
                await asyncio.to_thread(remove, self.cfg.file)
            self._override = override
        await self.check()


async def enrolment_licence(cfg: LicenceSection, store: Store) -> LicenceManager | None:
    """For offline enrolment (CLI): the evaluated licence, or None when the licence is off.

    The manager holds no resource after evaluation, so it needs no closing.
    """
    if not cfg.enabled:
        return None
    manager = LicenceManager(cfg, store=store, bus=EventBus(), clock=store.clock)
    return await manager.__aenter__()


def _fields(status: LicenceStatus) -> dict[str, Any]:
    return {name: getattr(status, name) for name in LicenceStatus.__slots__}


def status_payload(status: LicenceStatus, now: float) -> dict[str, Any]:
    """The retained ``licence`` payload (schema: handlers/commands/schemas/licence.json)."""
    return {
        "state": status.state.value,
        "licence_id": status.licence_id,
        "binding": status.binding,
        "expires": None if status.not_after is None else utc_iso(status.not_after),
        "grace_until": None if status.grace_until is None else utc_iso(status.grace_until),
        "days_left": status.days_left(now),
        "features": dict(status.features),
        "fingerprint": status.fingerprint,
        "seat": dict(status.seat),
        "detail": status.detail,
        "at": utc_iso(now),
    }
