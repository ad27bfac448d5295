"""Retention: the sweeper that deletes every class of personal data when its time is up.

One sweep (:func:`sweep`), in order:

1. active consents past their expiry become ``expired`` (audited each);
2. every enrolled subject that is no longer permitted (no active biometric
   consent, no age record, or a minor without an active guardian consent) is
   erased through the same path as a withdrawal;
3. subjects with no successful match (nor new template) for
   ``template_idle_days`` are erased, and so are subjects whose ``valid_until``
   attribute has passed (visitor passes; reason ``validity_ended``);
4. access events older than ``access_event_days``, delivered outbox rows
   older than ``delivered_outbox_days``, audit rows older than ``audit_days``
   (chain anchored), decision snapshots older than ``snapshot_hours`` (all of
   them when snapshots are off), terminal consent records older than
   ``audit_days``, and age records with neither subject nor live consent
   are deleted;
5. the sweep is audited with its counts and reported as a PrivacyEvent.

:class:`RetentionSweeper` is the supervised :class:`Service`: it sweeps at
start-up, then sleeps (injected clock) until the earliest of the sweep
interval and the next known deadline (a consent expiry, a template's idle
limit, a snapshot's age limit), so an expired consent stops matching at its
expiry rather than up to an interval later.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import dataclass, field

import structlog

from ..runtime.clock import Clock
from ..runtime.errors import FacegateError
from ..runtime.events import PrivacyKind
from ..storage import AuditAction, EventClass, Store
from ..storage.audit import purge_before
from ..storage.outbox import purge_class_before
from . import holds, receipts, reconsent
from .consent import ACCESS_CONTROL
from .consent_model import ConsentState
from .core import Policy
from .startup import unpermitted_reasons

_log = structlog.get_logger("facegate.policy")
_DAY = 86_400.0
_ACTOR = "policy.retention"
MIN_DELAY_S = 1.0


@dataclass(frozen=True)
class SweepReport:
    """Counts of what one sweep removed (no ids, no personal data)."""

    at: float
    counts: dict[str, int] = field(default_factory=dict)
    failures: int = 0


def _validity_end(value: object) -> float | None:
    """POSIX end of a ``valid_until`` attribute: an ISO date-time, or a date plus a full day of
    grace (the device's time zone is not known here; no zone is more than 14 h away)."""
    if not isinstance(value, str) or not value:
        return None
    try:
        if len(value) == 10:
            day = dt.date.fromisoformat(value) + dt.timedelta(days=2)
            return dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC).timestamp()
        stamp = dt.datetime.fromisoformat(value)
    except ValueError:
        return None  # unreadable: the match path refuses it; erasure waits for a correction
    return (stamp if stamp.tzinfo else stamp.replace(tzinfo=dt.UTC)).timestamp()


async def validity_ended(store: Store, now: float) -> list[str]:
    """Subjects whose ``valid_until`` attribute has passed (visitor passes): erased by the sweep."""
    # Every subject's attributes in one paged read and decryption pass (not a round trip each).
    values, unopened = await store.subjects.attribute_values("valid_until")
    out = [sid for sid, value in values if (end := _validity_end(value)) is not None and now >= end]
    for sid in unopened:  # its KEK arrived after the key ring was loaded (rotation), or tampered
        try:
            record = await store.gallery.get(sid)  # refreshes the key ring
        except FacegateError:
            continue  # erased meanwhile or unreadable: other rules handle it
        end = _validity_end(record.attributes.get("valid_until"))
        if end is not None and now >= end:
            out.append(sid)
    return sorted(out)


async def sweep(policy: Policy) -> SweepReport:
    """Run one retention sweep now (see module docstring); audited with counts."""
    store, ret = policy.store, policy.privacy.retention
    counts: dict[str, int] = {}
    failures = 0
    async with policy.lock:
        async with store.transaction() as tx:
            counts["consents_expired"] = len(await policy.consents.expire_due(tx))
            counts["holds_lapsed"] = await holds.lapse_due(policy, tx)
        counts["erased_after_hold"] = await holds.run_pending(policy, actor=_ACTOR)
        now = store.clock.wall()
        # One set-based read for the whole gallery: a check per subject costs a round trip each
        # (10-17 minutes at 1M subjects, under the policy lock, right after every start).
        erase = await unpermitted_reasons(store, policy.privacy, ACCESS_CONTROL)
        idle = await store.subjects.idle_since(now - ret.template_idle_s)
        seen = {sid for sid, _ in erase}
        erase += [(sid, "idle") for sid in idle if sid not in seen]
        seen = {sid for sid, _ in erase}
        erase += [(sid, "validity_ended") for sid in await validity_ended(store, now) if sid not in seen]
        for sid, reason in erase:
            try:
                out = await policy.erase_locked(sid, actor=_ACTOR, reason=reason)
            except FacegateError as exc:
                failures += 1
                _log.error("policy.retention_erase_failed", subject_id=sid, error=type(exc).__name__)
                continue
            key = "deferred_held" if out.deferred else f"erased_{reason}"
            counts[key] = counts.get(key, 0) + 1
        counts.update(await _reconsent(policy))
        device_hold = await holds.is_held(policy, None)
        counts["device_hold"] = int(device_hold)
        counts["outbox_delivered"] = await store.outbox.purge_delivered(ret.delivered_outbox_days * _DAY)
        if device_hold:  # a device-wide legal hold keeps every record until it lapses
            return await _held_sweep(policy, counts, failures)
        async with store.transaction() as tx:
            counts["access_events"] = await purge_class_before(
                tx, EventClass.ACCESS, tx.at - ret.access_event_days * _DAY
            )
            snap_cutoff = (
                tx.at - ret.snapshot_hours * 3600.0 if policy.privacy.decision_snapshots else tx.at + 1
            )
            counts["snapshots"] = await store.snapshots.purge_before(tx, snap_cutoff)
            counts["consent_records"] = await store.consents.purge_closed(
                tx,
                states=(ConsentState.WITHDRAWN.value, ConsentState.EXPIRED.value),
                changed_before=tx.at - ret.audit_days * _DAY,
            )
            counts["age_records"] = await store.ages.purge_orphans(
                tx, live_states=(ConsentState.PENDING.value, ConsentState.ACTIVE.value)
            )
            counts["audit_rows"] = await purge_before(tx, tx.at - ret.audit_days * _DAY)
            await store.audit(tx, actor=_ACTOR, action=AuditAction.RETENTION_SWEEP, detail=dict(counts))
            event = await receipts.emit(store, tx, PrivacyKind.RETENTION_SWEEP, counts=counts)
        if counts["access_events"]:
            await store.outbox.open()  # re-count the backlog after deleting undelivered rows
    removed = sum(v for k, v in counts.items() if k.startswith("erased") or k in _DELETED)
    if removed or failures:
        await store.checkpoint()
    _log.info("policy.retention_swept", failures=failures, **counts)
    return SweepReport(event.at, counts, failures)


async def _held_sweep(policy: Policy, counts: dict[str, int], failures: int) -> SweepReport:
    store = policy.store
    async with store.transaction() as tx:
        for key in ("access_events", "snapshots", "consent_records", "age_records", "audit_rows"):
            counts[key] = 0
        await store.audit(tx, actor=_ACTOR, action=AuditAction.RETENTION_SWEEP, detail=dict(counts))
        event = await receipts.emit(store, tx, PrivacyKind.RETENTION_SWEEP, counts=counts)
    _log.info("policy.retention_swept", failures=failures, **counts)
    return SweepReport(event.at, counts, failures)


_DELETED = ("outbox_delivered", "access_events", "snapshots", "consent_records", "age_records", "audit_rows")


async def _reconsent(policy: Policy) -> dict[str, int]:
    """Counts of subjects that must re-consent; the lapsed ones leave the matcher."""
    state = await reconsent.status(policy)
    for sid in state.lapsed:
        await policy.live.remove(sid)
    return {"reconsent_pending": len(state.pending), "reconsent_lapsed": len(state.lapsed)}


async def next_deadline(policy: Policy) -> float | None:
    """Wall time of the earliest known retention deadline (consent, template, snapshot)."""
    ret = policy.privacy.retention
    store = policy.store
    expiry = await store.consents.next_expiry(active_state=ConsentState.ACTIVE.value)
    last_use = await store.subjects.earliest_last_use()
    snapshot = await store.snapshots.oldest()
    due = []
    if expiry is not None:
        due.append(expiry)
    if last_use is not None:
        due.append(last_use + ret.template_idle_s)
    if snapshot is not None:
        due.append(snapshot + ret.snapshot_hours * 3600.0)
    due += [d for d in (await holds.next_expiry(policy), await reconsent.deadline(policy)) if d is not None]
    # A deadline still past after a sweep is data a legal hold keeps (or a failed erasure):
    # waking for it every second would spin; the hold's own expiry is the deadline that matters.
    now = policy.clock.wall()
    future = [d for d in due if d > now]
    return min(future) if future else None


class RetentionSweeper:
    """Supervised service: sweep at start-up, then at every deadline or interval."""

    def __init__(self, policy: Policy, *, clock: Clock) -> None:
        self.policy = policy
        self.clock = clock
        self.sweeps = 0
        self.last: SweepReport | None = None
        self.next_wake: float | None = None
        """Monotonic time of the next planned sweep (None while sweeping)."""
        self._swept = asyncio.Condition()

    @property
    def name(self) -> str:
        return "policy.retention"

    async def run(self) -> None:
        while True:
            self.next_wake = None
            self.last = await sweep(self.policy)
            delay = self.policy.privacy.retention.sweep_interval_s
            due = await next_deadline(self.policy)
            if due is not None:
                delay = min(delay, max(MIN_DELAY_S, due - self.clock.wall()))
            self.next_wake = self.clock.monotonic() + delay
            async with self._swept:
                self.sweeps += 1
                self._swept.notify_all()
            await self.clock.sleep(delay)

    async def idle(self) -> None:
        """Wait until no sweep is due or running (the next one is planned in the future)."""
        async with self._swept:
            await self._swept.wait_for(
                lambda: self.next_wake is not None and self.next_wake > self.clock.monotonic()
            )

    async def wait_sweeps(self, count: int) -> SweepReport | None:
        """Wait until at least ``count`` sweeps have completed (tests, CLI)."""
        async with self._swept:
            await self._swept.wait_for(lambda: self.sweeps >= count)
        return self.last
