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
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime

from ..runtime.config.privacy import PrivacySection
from ..runtime.events import PrivacyKind
from ..storage import AuditAction, EventClass, Store, Tx, uuid7_str
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

_COLUMNS = (
    "consent_id, subject_id, kind, purpose, state, granted_at, method, notice_version, actor, "
    "evidence_digest, expires_at, guardian_id, guardian_relationship, guardian_evidence_digest, "
    "changed_at"
)


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


def _row_to_record(r: Sequence[object]) -> ConsentRecord:
    guardian = None
    if r[11] is not None:
        guardian = Guardian(guardian_id=str(r[11]), relationship=str(r[12]), evidence_digest=str(r[13]))
    return ConsentRecord(
        consent_id=str(r[0]),
        subject_id=str(r[1]),
        kind=ConsentKind(str(r[2])),
        purpose=str(r[3]),
        state=ConsentState(str(r[4])),
        granted_at=None if r[5] is None else float(str(r[5])),
        method=ConsentMethod(str(r[6])),
        notice_version=str(r[7]),
        actor=str(r[8]),
        evidence_digest=str(r[9]),
        expires_at=None if r[10] is None else float(str(r[10])),
        guardian=guardian,
        changed_at=float(str(r[14])),
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
        src = tx if tx is not None else self.store.db
        row = await src.fetchone(
            f"SELECT {_COLUMNS} FROM consents WHERE consent_id = ?",  # noqa: S608  # constant column list
            (consent_id,),
        )
        if row is None:
            raise ConsentNotFoundError(f"no consent {consent_id}")
        return _row_to_record(row)

    async def for_subject(self, subject_id: str, *, tx: Tx | None = None) -> list[ConsentRecord]:
        src = tx if tx is not None else self.store.db
        rows = await src.fetchall(
            f"SELECT {_COLUMNS} FROM consents WHERE subject_id = ? "  # noqa: S608  # constant column list
            "ORDER BY consent_id",
            (subject_id,),
        )
        return [_row_to_record(r) for r in rows]

    async def age(self, subject_id: str, *, tx: Tx | None = None) -> AgeRecord | None:
        src = tx if tx is not None else self.store.db
        row = await src.fetchone(
            "SELECT birth_date, age_band, recorded_at FROM policy_age WHERE subject_id = ?",
            (subject_id,),
        )
        if row is None:
            return None
        return AgeRecord(
            subject_id,
            None if row[0] is None else date.fromisoformat(str(row[0])),
            None if row[1] is None else AgeBand(str(row[1])),
            float(row[2]),
        )

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
            g = guardian
            await tx.execute(
                f"INSERT INTO consents({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",  # noqa: S608  # constant column list
                (
                    record.consent_id,
                    subject_id,
                    kind.value,
                    purpose,
                    record.state.value,
                    None,
                    method.value,
                    notice,
                    actor,
                    evidence_digest,
                    expires_at,
                    g.guardian_id if g else None,
                    g.relationship if g else None,
                    g.evidence_digest if g else None,
                    tx.at,
                ),
            )
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
        rows = await tx.fetchall(
            f"SELECT {_COLUMNS} FROM consents WHERE state = ? "  # noqa: S608  # constant column list
            "AND expires_at IS NOT NULL AND expires_at <= ?",
            (ConsentState.ACTIVE.value, tx.at),
        )
        return [
            await self._move(tx, _row_to_record(r), ConsentState.EXPIRED, "policy.retention", "expired")
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
        await tx.execute(
            "INSERT INTO policy_age(subject_id, birth_date, age_band, recorded_at, actor) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT(subject_id) DO UPDATE SET "
            "birth_date = excluded.birth_date, age_band = excluded.age_band, "
            "recorded_at = excluded.recorded_at, actor = excluded.actor",
            (subject_id, None if birth is None else birth.isoformat(), band and band.value, tx.at, actor),
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
        await tx.execute(
            "UPDATE consents SET state = ?, granted_at = ?, changed_at = ? WHERE consent_id = ?",
            (new.state.value, new.granted_at, new.changed_at, new.consent_id),
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
