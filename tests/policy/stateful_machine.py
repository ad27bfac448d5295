"""Hypothesis stateful test: random sequences of consent, age, enrol, withdraw, expire, sweep,
match, erase, export, restrict, legal hold and a re-consent notice change against a real
SQLite file, the real matcher and the running sweeper.

Invariants after every step:
* no template exists without active consent (and an age record), unless a legal hold
  deferred its erasure;
* a withdrawn, expired, restricted, held-for-erasure or re-consent-overdue subject never
  matches; every other enrolled subject does;
* a minor without an active guardian consent is never enrolled (unless held);
* every restriction and hold transition is audited and receipted;
* after a sweep, nothing outlives its retention (unless held).

The expected outcomes come from ``stateful_model.py`` (independent restatements
of the rules from raw records); the model's own state is the restrictions it asked
for, each ended by a later completed erasure.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
from collections.abc import Coroutine
from datetime import date
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
import pytest
from facegate.handlers.recognition.matcher import Matcher
from facegate.policy import (
    AgeBand,
    ConsentKind,
    ConsentMethod,
    ConsentState,
    Guardian,
    Policy,
    RetentionSweeper,
    device_public_key,
    export_subject,
    holds,
    reconsent,
    restriction,
    sweep,
    verify_export,
)
from facegate.policy.errors import (
    ConsentRequiredError,
    HoldNotFoundError,
    InvalidTransitionError,
    SubjectRestrictedError,
    SubjectUnknownError,
)
from facegate.runtime.clock import ManualClock
from facegate.runtime.config.privacy import NoticePolicy, PrivacySection
from facegate.storage import EventClass, KekSource, KekSourceKind, Store, rights_state
from facegate.storage.crypto import new_key
from facegate.storage.kek import encode_key
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, initialize, invariant, rule

from .conftest import DIM, EVIDENCE, MODEL
from .stateful_model import Restrictions, assert_retention, audit_seq, expected_permitted, note, stale

T = TypeVar("T")
SUBJECTS = ("s0", "s1", "s2")
HOUR = 3600.0
DAY = 86_400.0
AGES: dict[str, tuple[date | None, AgeBand | None]] = {
    "adult": (date(1985, 3, 9), None),
    "child": (date(2019, 7, 1), None),  # 6 on the ManualClock's 2026-01-01
    "teen_band": (None, AgeBand.FROM_14_TO_17),
    "under14_band": (None, AgeBand.UNDER_14),
    "adult_band": (None, AgeBand.ADULT),
}


def probe(subject_id: str, n: int) -> npt.NDArray[np.float32]:
    rng = np.random.default_rng(abs(hash((subject_id, n))) % (2**32))
    x = rng.standard_normal((1, DIM)).astype(np.float32)
    return x / np.linalg.norm(x)


class PolicyMachine(RuleBasedStateMachine):
    consents = Bundle("consents")
    held = Bundle("holds")

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.tmp = Path(tempfile.mkdtemp(prefix="policy-sm-"))
        self.env = f"FACEGATE_SM_KEK_{os.getpid()}_{id(self)}"
        os.environ[self.env] = encode_key(new_key())
        self.clock = ManualClock()
        self.privacy = PrivacySection()
        self.matcher = Matcher(MODEL, DIM, threads=1)
        self.store = Store(
            self.tmp / "sm.db", KekSource(kind=KekSourceKind.ENV, env=self.env), clock=self.clock
        )
        self.run(self.store.__aenter__())
        self.policy = self.run(Policy(self.store, self.privacy, clock=self.clock, sink=self.matcher).open())
        self.sweeper = RetentionSweeper(self.policy, clock=self.clock)
        self.task = self.loop.create_task(self.sweeper.run(), name="policy.retention")
        self.run(asyncio.wait_for(self.sweeper.wait_sweeps(1), 20))
        self.probes: dict[str, list[npt.NDArray[np.float32]]] = {s: [] for s in SUBJECTS}
        self.pubkey = self.run(device_public_key(self.store))
        self.restricted = Restrictions()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    def teardown(self) -> None:
        self.task.cancel()
        self.run(asyncio.gather(self.task, return_exceptions=True))
        self.run(self.store.__aexit__(None, None, None))
        self.loop.close()
        shutil.rmtree(self.tmp, ignore_errors=True)
        os.environ.pop(self.env, None)

    # -- helpers ---------------------------------------------------------------
    async def _permitted(self, sid: str) -> bool:
        try:
            await self.policy.consents.check_enrolment(sid, "access_control")
        except ConsentRequiredError:
            return False
        return True

    # The model's verdicts (stateful_model.py), now.
    def _expected(self, sid: str) -> bool:
        return self.run(expected_permitted(self.policy, self.clock.wall(), sid))

    def _stale(self, sid: str) -> bool:
        return self.run(stale(self.policy, self.privacy, self.clock.wall(), sid))

    def _restricted(self, sid: str) -> bool:
        return self.run(self.restricted.active(self.store.db, sid))

    async def _settle(self) -> None:
        """Let the sweeper finish any sweep the last clock advance triggered."""
        if self.task.done():  # the sweeper crashed: show why instead of waiting for it
            self.task.result()
        await asyncio.wait_for(self.sweeper.idle(), 20)

    # -- rules -----------------------------------------------------------------
    @initialize()
    def start(self) -> None:
        pass

    @rule(sid=st.sampled_from(SUBJECTS), age=st.sampled_from(sorted(AGES)))
    def record_age(self, sid: str, age: str) -> None:
        birth, band = AGES[age]
        if self.run(self.policy.record_age(sid, birth_date=birth, age_band=band, actor="op")) is not None:
            note("age correction erased an unguarded minor")

    @rule(
        target=consents,
        sid=st.sampled_from(SUBJECTS),
        age=st.sampled_from(sorted(AGES)),
        with_guardian=st.booleans(),
        expires_days=st.none() | st.integers(1, 200),
    )
    def onboard(self, sid: str, age: str, with_guardian: bool, expires_days: int | None) -> str:
        """The kiosk flow: age, active biometric consent, maybe a guardian's, then enrol."""
        self.record_age(sid, age)
        if with_guardian:
            self.grant(sid, guardian=True, activate=True, expires_days=expires_days)
        cid = self.grant(sid, guardian=False, activate=True, expires_days=expires_days)
        self.enrol(sid)
        return cid

    @rule(
        target=consents,
        sid=st.sampled_from(SUBJECTS),
        guardian=st.booleans(),
        activate=st.booleans(),
        expires_days=st.none() | st.integers(1, 200),
    )
    def grant(self, sid: str, guardian: bool, activate: bool, expires_days: int | None) -> str:
        rec = self.run(
            self.policy.consents.grant(
                subject_id=sid,
                kind=ConsentKind.GUARDIAN if guardian else ConsentKind.BIOMETRIC,
                method=ConsentMethod.KIOSK,
                evidence_digest=EVIDENCE,
                actor="op",
                expires_at=None if expires_days is None else self.clock.wall() + expires_days * DAY,
                guardian=Guardian(guardian_id="g1", relationship="father", evidence_digest=EVIDENCE)
                if guardian
                else None,
                activate=activate,
            )
        )
        return rec.consent_id

    @rule(cid=consents)
    def activate(self, cid: str) -> None:
        state = self.run(self.policy.consents.get(cid)).state
        if state is ConsentState.PENDING:
            assert self.run(self.policy.consents.activate(cid, actor="op")).state is ConsentState.ACTIVE
        else:
            with pytest.raises(InvalidTransitionError):
                self.run(self.policy.consents.activate(cid, actor="op"))

    @rule(cid=consents)
    def withdraw(self, cid: str) -> None:
        state = self.run(self.policy.consents.get(cid)).state
        if state in {ConsentState.PENDING, ConsentState.ACTIVE}:
            rec, outcome = self.run(self.policy.withdraw_consent(cid, actor="subject"))
            assert rec.state is ConsentState.WITHDRAWN
            note("withdrawal erased a subject" if outcome else "withdrawal kept the subject")
        else:
            with pytest.raises(InvalidTransitionError):
                self.run(self.policy.withdraw_consent(cid, actor="subject"))

    @rule(sid=st.sampled_from(SUBJECTS))
    def enrol(self, sid: str) -> None:
        if len(self.probes[sid]) >= 12:  # keeps well under the 20-template limit
            return
        emb = probe(sid, len(self.probes[sid]))
        expected = self._expected(sid)
        blocked = self._restricted(sid) or self.run(rights_state.erasure_pending(self.store.db, sid))
        if expected and blocked:
            with pytest.raises(SubjectRestrictedError):
                self.run(self.policy.enrol_subject(sid, emb, MODEL, actor="op"))
            note("enrol refused: restricted or erasure held")
        elif expected and self._stale(sid):
            with pytest.raises(ConsentRequiredError):
                self.run(self.policy.enrol_subject(sid, emb, MODEL, actor="op"))
            note("enrol refused: re-consent overdue")
        elif expected:
            self.run(self.policy.enrol_subject(sid, emb, MODEL, actor="op"))
            self.probes[sid].append(emb)
            note("enrol accepted")
        else:
            with pytest.raises(ConsentRequiredError) as err:
                self.run(self.policy.enrol_subject(sid, emb, MODEL, actor="op"))
            note(f"enrol refused: {err.value.missing}")

    @rule(sid=st.sampled_from(SUBJECTS))
    def erase(self, sid: str) -> None:
        with contextlib.suppress(SubjectUnknownError):
            self.run(self.policy.erase_subject(sid, actor="dpo"))

    @rule(hours=st.integers(1, 24 * 120))
    def advance(self, hours: int) -> None:
        before = self.run(self.store.gallery.count_subjects())
        self.run(self.clock.advance(hours * HOUR))
        self.run(self._settle())
        if self.run(self.store.gallery.count_subjects()) < before:
            note("sweeper service erased on a deadline")

    @rule(sid=st.sampled_from(SUBJECTS))
    def match(self, sid: str) -> None:
        for emb in self.probes[sid]:
            best = self.matcher.search(emb, k=1).best
            if best is not None and best.subject_id == sid and best.score > 0.99:
                self.run(self.policy.record_match(sid, self.clock.wall()))

    @rule(sid=st.sampled_from(SUBJECTS))
    def access_event(self, sid: str) -> None:
        self.run(
            self.store.outbox.append(
                "event/access", f'{{"subject_id":"{sid}"}}'.encode(), klass=EventClass.ACCESS
            )
        )

    @rule(sid=st.sampled_from(SUBJECTS))
    def export(self, sid: str) -> None:
        try:
            bundle = self.run(export_subject(self.policy, sid, actor="dpo"))
        except SubjectUnknownError:
            return
        body = verify_export(bundle, self.pubkey)
        assert body["subject"]["subject_id"] == sid

    @rule()
    def explicit_sweep(self) -> None:
        report = self.run(sweep(self.policy))
        for key, value in report.counts.items():
            if value and key.startswith("erased"):
                note(f"sweep {key}")
        if report.counts.get("device_hold") or report.counts.get("deferred_held"):
            note("sweep kept held data")
            return  # a legal hold keeps data past its retention (R51)
        self.run(assert_retention(self.store.db, report.at, self.privacy.retention))

    # -- restriction, legal hold, re-consent -----------------------------------------
    async def _trail(self) -> tuple[int, int]:
        audit = await self.store.db.fetchone("SELECT COUNT(*) FROM audit")
        privacy = await self.store.db.fetchone("SELECT COUNT(*) FROM outbox WHERE klass = 'privacy'")
        return int(audit[0]) if audit else 0, int(privacy[0]) if privacy else 0

    def _assert_trail(self, before: tuple[int, int], changed: bool) -> None:
        after = self.run(self._trail())
        if changed:  # audited and receipted (the sweep may have purged old rows: compare loosely)
            assert after[0] >= 1 and after[1] >= 1
            assert after != before, "a change left no audit row or receipt"

    @rule(sid=st.sampled_from(SUBJECTS))
    def restrict(self, sid: str) -> None:
        before = self.run(self._trail())
        seq = self.run(audit_seq(self.store.db))
        try:
            out = self.run(restriction.restrict(self.policy, sid, actor="dpo"))
        except SubjectUnknownError:
            return
        self.restricted.add(sid, seq)
        assert not self.matcher.has_subject(sid)  # before the call returned
        self._assert_trail(before, out.changed)
        note("restricted")

    @rule(sid=st.sampled_from(SUBJECTS))
    def unrestrict(self, sid: str) -> None:
        before = self.run(self._trail())
        try:
            out = self.run(restriction.unrestrict(self.policy, sid, actor="dpo"))
        except SubjectUnknownError:
            return
        self.restricted.discard(sid)
        self._assert_trail(before, out.changed)

    @rule(target=held, sid=st.none() | st.sampled_from(SUBJECTS), days=st.integers(1, 60))
    def hold(self, sid: str | None, days: int) -> str:
        before = self.run(self._trail())
        h = self.run(
            holds.set_hold(
                self.policy, sid, reason="case-1", expires_at=self.clock.wall() + days * DAY, actor="dpo"
            )
        )
        self._assert_trail(before, True)
        note("device hold" if sid is None else "subject hold")
        return h.hold_id

    @rule(hold_id=held)
    def release_hold(self, hold_id: str) -> None:
        before = self.run(self._trail())
        try:
            self.run(holds.release_hold(self.policy, hold_id, actor="dpo"))
        except HoldNotFoundError:
            return  # already released or lapsed
        self._assert_trail(before, True)
        note("hold released")

    @rule()
    def new_notice(self) -> None:
        """A material notice change (once): old consents need re-consent after 10 days."""
        if self.privacy.notice_version == "2":
            return
        self.privacy = PrivacySection(
            notice_version="2", notices={"2": NoticePolicy(require_reconsent=True, grace_days=10)}
        )
        self.policy.privacy = self.policy.consents.privacy = self.privacy
        self.run(reconsent.note_notice(self.policy))
        note("material notice change")

    # -- invariants --------------------------------------------------------------
    @invariant()
    def no_template_without_active_consent_and_no_unguarded_minor(self) -> None:
        for sid in self.run(self.store.gallery.subject_ids()):
            if self.run(rights_state.erasure_pending(self.store.db, sid)):
                assert self.run(holds.is_held(self.policy, sid)), f"{sid}: erasure pending without a hold"
                continue  # kept under a legal hold: unmatchable (next invariant)
            assert self._expected(sid), f"{sid} enrolled without the consent it needs"
            assert self.run(self._permitted(sid))

    @invariant()
    def withdrawn_or_expired_never_matches(self) -> None:
        enrolled = set(self.run(self.store.gallery.subject_ids()))
        for sid in SUBJECTS:
            matchable = self.matcher.has_subject(sid)
            blocked = (
                self._restricted(sid)
                or self.run(rights_state.erasure_pending(self.store.db, sid))
                or self._stale(sid)
            )
            assert matchable == (sid in enrolled and not blocked), f"matcher and store disagree on {sid}"
            if matchable:
                assert self._expected(sid)
            else:
                for emb in self.probes[sid]:
                    best = self.matcher.search(emb, k=1).best
                    assert best is None or best.subject_id != sid


EXAMPLES = int(os.environ.get("FACEGATE_SM_EXAMPLES", "40"))
# 40 examples take ~16 s on an idle 2-core machine; a loaded CI machine needs the headroom.
# The limit grows with FACEGATE_SM_EXAMPLES: a timeout that interrupts an example makes
# Hypothesis report "inconsistent data generation" instead of the slowness.
TestPolicyMachine = pytest.mark.timeout(max(180, 5 * EXAMPLES))(PolicyMachine.TestCase)
TestPolicyMachine.settings = settings(
    max_examples=EXAMPLES,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
