"""The consent registry: consent records and age evidence on the storage database.

Contract
--------
* :meth:`ConsentRegistry.grant` records a consent in state ``pending``
  (``activate=True`` also performs the explicit ``pending -> active``
  transition). :meth:`activate`, :meth:`withdraw` and :meth:`expire` move a
  record along the state machine of :mod:`.consent_model`; every transition
  commits together with an audit row (``consent_change``) and a privacy
  receipt in the outbox, or not at all.
* :meth:`record_age` stores a birth date or an age band for a subject.
* :meth:`check_enrolment` is the rule itself: active biometric consent for
  the purpose, an age record, and for a minor (below ``privacy.minor_age``)
  an active guardian consent naming the guardian. It raises
  :class:`ConsentRequiredError` saying which consent is missing.

The registry never erases anything; :class:`~facegate.policy.Policy`
combines a withdrawal with the erasure it implies.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime

from ..runtime.config.privacy import PrivacySection
from ..runtime.events import PrivacyKind
from ..storage import AuditAction, EventClass, Store, Tx, uuid7_str
from ..storage.consents import AgeRow, ConsentRow
from . import receipts
from .collection import check_subject_id
from .consent_model import (
    AgeBand,
    ConsentKind,
    ConsentMethod,
    ConsentRecord,
    ConsentState,
    Guardian,
    is_minor,
)
from .errors import ConsentInputError, ConsentNotFoundError, ConsentRequiredError

ACCESS_CONTROL = "access_control"
"""The purpose the device processes faces for."""

_PURPOSE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_GRANTED = frozenset({ConsentState.PENDING, ConsentState.ACTIVE})
_DIGEST = re.compile(r"^[A-Za-z0-9:+/=_.-]{8,200}$")
_TEXT = re.compile(r"^[^\x00-\x1f]{1,128}$")


@dataclass(frozen=True)
class AgeRecord:
    """Age evidence of one subject: a birth date or an age band (at least one)."""

    subject_id: str
    birth_date: date | None
    age_band: AgeBand | None
    recorded_at: float


def today(wall: float) -> date:
    """The UTC calendar date of wall time ``wall`` (ages are counted in UTC days)."""
    return datetime.fromtimestamp(wall, tz=UTC).date()


def _record(r: ConsentRow) -> ConsentRecord:
    guardian = None
    if r.guardian_id is not None:
        guardian = Guardian(
            guardian_id=r.guardian_id,
            relationship=str(r.guardian_relationship),
            evidence_digest=str(r.guardian_evidence_digest),
        )
    return ConsentRecord(
        consent_id=r.consent_id,
        subject_id=r.subject_id,
        kind=ConsentKind(r.kind),
        purpose=r.purpose,
        state=ConsentState(r.state),
        granted_at=r.granted_at,
        method=ConsentMethod(r.method),
        notice_version=r.notice_version,
        actor=r.actor,
        evidence_digest=r.evidence_digest,
        expires_at=r.expires_at,
        guardian=guardian,
        changed_at=r.changed_at,
    )


def _row(rec: ConsentRecord) -> ConsentRow:
    g = rec.guardian
    return ConsentRow(
        consent_id=rec.consent_id,
        subject_id=rec.subject_id,
        kind=rec.kind.value,
        purpose=rec.purpose,
        state=rec.state.value,
        granted_at=rec.granted_at,
        method=rec.method.value,
        notice_version=rec.notice_version,
        actor=rec.actor,
        evidence_digest=rec.evidence_digest,
        expires_at=rec.expires_at,
        guardian_id=g.guardian_id if g else None,
        guardian_relationship=g.relationship if g else None,
        guardian_evidence_digest=g.evidence_digest if g else None,
        changed_at=rec.changed_at,
    )


def _age(r: AgeRow) -> AgeRecord:
    return AgeRecord(
        r.subject_id,
        None if r.birth_date is None else date.fromisoformat(r.birth_date),
        None if r.age_band is None else AgeBand(r.age_band),
        r.recorded_at,
    )


def _check_text(value: str, what: str, pattern: re.Pattern[str] = _TEXT) -> str:
    if not isinstance(value, str) or not pattern.match(value):
        raise ConsentInputError(f"invalid {what}")
    return value


class ConsentRegistry:
    """Consent records and age evidence of one store."""

    def __init__(self, store: Store, privacy: PrivacySection) -> None:
        self.store = store
        self.privacy = privacy

    # -- reads ------------------------------------------------------------
    async def get(self, consent_id: str, *, tx: Tx | None = None) -> ConsentRecord:
        row = await self.store.consents.get(consent_id, tx=tx)
        if row is None:
            raise ConsentNotFoundError(f"no consent {consent_id}")
        return _record(row)

    async def for_subject(self, subject_id: str, *, tx: Tx | None = None) -> list[ConsentRecord]:
        return [_record(r) for r in await self.store.consents.for_subject(subject_id, tx=tx)]

    async def age(self, subject_id: str, *, tx: Tx | None = None) -> AgeRecord | None:
        row = await self.store.ages.get(subject_id, tx=tx)
        return None if row is None else _age(row)

    # -- the enrolment rule -------------------------------------------------
    async def check_enrolment(self, subject_id: str, purpose: str, *, tx: Tx | None = None) -> str:
        """Raise ConsentRequiredError unless enrolment is permitted; return the consent id used.

        Permitted means: an active (unexpired) biometric consent for ``purpose``;
        an age record; and, when the subject is below ``minor_age`` on today's
        UTC date, an active guardian consent for ``purpose`` naming the guardian.
        """
        now = tx.at if tx is not None else self.store.clock.wall()
        records = await self.for_subject(subject_id, tx=tx)
        active = [r for r in records if r.purpose == purpose and r.is_active(now)]
        bio = [r for r in active if r.kind is ConsentKind.BIOMETRIC]
        if not bio:
            raise ConsentRequiredError(
                subject_id,
                f"{ConsentKind.BIOMETRIC.value}:{purpose}",
                "no active biometric consent for this purpose (separate, explicit consent is required)",
            )
        age = await self.age(subject_id, tx=tx)
        if age is None:
            raise ConsentRequiredError(
                subject_id, "age", "no birth date or age band recorded (needed to decide on guardian consent)"
            )
        minor = is_minor(
            birth=age.birth_date, band=age.age_band, today=today(now), minor_age=self.privacy.minor_age
        )
        if minor and not any(r.kind is ConsentKind.GUARDIAN and r.guardian is not None for r in active):
            raise ConsentRequiredError(
                subject_id,
                f"{ConsentKind.GUARDIAN.value}:{purpose}",
                f"the subject is under {self.privacy.minor_age}; a guardian's consent is required",
            )
        return bio[0].consent_id

    # -- writes -------------------------------------------------------------
    async def grant(
        self,
        *,
        subject_id: str,
        kind: ConsentKind,
        method: ConsentMethod,
        evidence_digest: str,
        actor: str,
        purpose: str = ACCESS_CONTROL,
        notice_version: str | None = None,
        expires_at: float | None = None,
        guardian: Guardian | None = None,
        activate: bool = False,
    ) -> ConsentRecord:
        """Record a new consent (``pending``; ``activate=True`` then makes it ``active``)."""
        check_subject_id(subject_id, "subject id")
        kind, method = ConsentKind(kind), ConsentMethod(method)
        _check_text(purpose, "purpose", _PURPOSE)
        _check_text(evidence_digest, "evidence digest", _DIGEST)
        _check_text(actor, "actor")
        notice = _check_text(notice_version or self.privacy.notice_version, "notice version")
        if kind is ConsentKind.GUARDIAN:
            if guardian is None:
                raise ConsentInputError("a guardian consent needs the guardian id, relationship and evidence")
            _check_text(guardian.guardian_id, "guardian id")
            _check_text(guardian.relationship, "guardian relationship")
            _check_text(guardian.evidence_digest, "guardian evidence digest", _DIGEST)
        elif guardian is not None:
            raise ConsentInputError("only a guardian consent names a guardian")
        async with self.store.transaction() as tx:
            if expires_at is not None and expires_at <= tx.at:
                raise ConsentInputError("expiry must be in the future")
            record = ConsentRecord(
                consent_id=uuid7_str(),
                subject_id=subject_id,
                kind=kind,
                purpose=purpose,
                state=ConsentState.PENDING,
                granted_at=None,
                method=method,
                notice_version=notice,
                actor=actor,
                evidence_digest=evidence_digest,
                expires_at=expires_at,
                guardian=guardian,
                changed_at=tx.at,
            )
            await self.store.consents.insert(tx, _row(record))
            await self._audit(tx, record, None, actor, "granted")
            if activate:
                record = await self._move(tx, record, ConsentState.ACTIVE, actor, "granted")
        return record

    async def activate(self, consent_id: str, *, actor: str) -> ConsentRecord:
        """``pending -> active`` (InvalidTransitionError otherwise)."""
        return await self.transition(consent_id, ConsentState.ACTIVE, actor=actor, reason="activated")

    async def transition(
        self, consent_id: str, to: ConsentState, *, actor: str, reason: str, tx: Tx | None = None
    ) -> ConsentRecord:
        """Move one record to ``to``, audited, in ``tx`` or its own transaction."""
        if tx is not None:
            return await self._move(tx, await self.get(consent_id, tx=tx), to, actor, reason)
        async with self.store.transaction() as t:
            return await self._move(t, await self.get(consent_id, tx=t), to, actor, reason)

    async def expire_due(self, tx: Tx) -> list[ConsentRecord]:
        """Mark every active consent whose expiry has passed as ``expired`` (audited)."""
        rows = await self.store.consents.due_to_expire(tx, active_state=ConsentState.ACTIVE.value)
        return [
            await self._move(tx, _record(r), ConsentState.EXPIRED, "policy.retention", "expired")
            for r in rows
        ]

    async def record_age(
        self,
        subject_id: str,
        *,
        birth_date: date | None = None,
        age_band: AgeBand | None = None,
        actor: str,
        tx: Tx | None = None,
    ) -> AgeRecord:
        """Record (or correct) a subject's birth date or age band; audited."""
        check_subject_id(subject_id, "subject id")
        _check_text(actor, "actor")
        if birth_date is None and age_band is None:
            raise ConsentInputError("record a birth date or an age band")
        band = None if age_band is None else AgeBand(age_band)
        if tx is None:
            async with self.store.transaction() as t:
                return await self._put_age(t, subject_id, birth_date, band, actor)
        return await self._put_age(tx, subject_id, birth_date, band, actor)

    async def _put_age(
        self, tx: Tx, subject_id: str, birth: date | None, band: AgeBand | None, actor: str
    ) -> AgeRecord:
        if birth is not None and birth > today(tx.at):
            raise ConsentInputError("birth date is in the future")
        await self.store.ages.put(
            tx,
            subject_id,
            birth_date=None if birth is None else birth.isoformat(),
            age_band=None if band is None else band.value,
            actor=actor,
        )
        # The audit row says that age evidence was recorded, never the date itself.
        await self.store.audit(
            tx,
            actor=actor,
            action="age_record",
            subject_id=subject_id,
            detail={"kind": "birth_date" if birth is not None else "age_band"},
        )
        return AgeRecord(subject_id, birth, band, tx.at)

    async def _move(
        self, tx: Tx, record: ConsentRecord, to: ConsentState, actor: str, reason: str
    ) -> ConsentRecord:
        new = record.transition(to, at=tx.at)
        await self.store.consents.set_state(
            tx, new.consent_id, state=new.state.value, granted_at=new.granted_at, changed_at=new.changed_at
        )
        await self._audit(tx, new, record.state, actor, reason)
        return new

    async def _audit(
        self, tx: Tx, rec: ConsentRecord, before: ConsentState | None, actor: str, reason: str
    ) -> None:
        await self.store.audit(
            tx,
            actor=actor,
            action=AuditAction.CONSENT_CHANGE,
            subject_id=rec.subject_id,
            detail={
                "consent_id": rec.consent_id,
                "kind": rec.kind.value,
                "purpose": rec.purpose,
                "from": None if before is None else before.value,
                "to": rec.state.value,
                "reason": reason,
            },
        )
        # A grant or activation is provisioning traffic (a bulk import queues two
        # per subject); a withdrawal, expiry or revocation is a privacy event.
        granting = before in {None, ConsentState.PENDING} and rec.state in _GRANTED
        await receipts.emit(
            self.store,
            tx,
            PrivacyKind.CONSENT_CHANGED,
            subject_id=rec.subject_id,
            detail=f"consent {rec.consent_id} {rec.kind.value}:{rec.purpose} -> {rec.state.value}",
            klass=EventClass.PROVISIONING if granting else EventClass.PRIVACY,
        )
