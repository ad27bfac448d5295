"""Keep the running device's matcher in step with changes made by other processes.

``facegate subjects erase`` or ``facegate enroll`` may run while the device
runs; they cannot reach its in-memory matcher. :class:`GalleryWatcher` polls
the database's data version (``store.audit_tail``: it changes only when
*another* connection commits) and then follows the audit log: every subject
named by a new ``enrol`` or ``erase`` row (and ``restrict``, ``unrestrict``,
``consent_change``, ``erasure_deferred``) is resynchronised (removed, then
reloaded if still enrolled and matchable:
:func:`~facegate.policy.restriction.why_unmatchable`); a ``teardown`` row
empties the matcher. So a CLI erasure is unmatchable on the device within one
poll interval (default 0.5 s).
"""

from __future__ import annotations

import structlog

from ..runtime.clock import Clock
from ..runtime.errors import FacegateError
from .consent import ACCESS_CONTROL
from .core import Policy
from .errors import ConsentRequiredError

_log = structlog.get_logger("facegate.policy")


_FOLLOWED = (
    "enrol", "erase", "teardown", "restrict", "unrestrict", "consent_change", "erasure_deferred",
)
"""Audit actions after which a subject's place in the matcher is re-decided."""


class GalleryWatcher:
    """Supervised service following other processes' enrolments and erasures."""

    def __init__(self, policy: Policy, *, clock: Clock, interval_s: float = 0.5) -> None:
        self.policy = policy
        self.clock = clock
        self.interval_s = interval_s
        self.last_seq: int | None = None
        self._version: int | None = None

    @property
    def name(self) -> str:
        return "policy.gallery_watch"

    async def run(self) -> None:
        while True:
            await self.poll()
            await self.clock.sleep(self.interval_s)

    async def poll(self) -> int:
        """One check; returns how many subjects were resynchronised."""
        tail = self.policy.store.audit_tail
        version = await tail.data_version()
        if self.last_seq is None:
            self.last_seq, self._version = await tail.last_seq(), version
            return 0
        if version == self._version:
            return 0
        self._version = version
        rows = await tail.after(self.last_seq, _FOLLOWED)
        if not rows:
            return 0
        self.last_seq = rows[-1][0]
        if self.policy.sink is None:
            return 0
        if any(action == "teardown" for _, action, _ in rows):
            self.policy.live.clear()
        subjects = sorted({s for _, action, s in rows if s is not None and action != "teardown"})
        async with self.policy.lock:
            for sid in subjects:
                await self.policy.live.remove(sid)
                if not await self.policy.is_enrolled(sid):
                    continue
                try:
                    await self.policy.consents.check_enrolment(sid, ACCESS_CONTROL)
                except ConsentRequiredError:
                    continue  # the sweeper erases it; meanwhile it stays unmatchable
                try:
                    await self.policy.reload(sid)
                except FacegateError as exc:  # tampered or keyless: it stays unmatchable
                    _log.error("policy.reload_failed", subject_id=sid, error=type(exc).__name__)
        _log.info("policy.gallery_resynced", subjects=len(subjects))
        return len(subjects)
