"""The restriction and legal-hold verbs of component ``privacy`` (mixed into PrivacyActions).

* ``restrict`` / ``unrestrict`` ``{subject_id, reason?}``: unmatchable before the reply;
* ``hold`` ``{subject_id | device: true, reason, days}``: a legal hold;
* ``hold/release`` ``{hold_id}``: ends a hold and runs the erasures it deferred.

Replies carry ids and counts only. Errors become stable codes
(``unknown_subject``, ``unknown_hold``, ``bad_args``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import holds, restriction
from .errors import ConsentInputError, HoldNotFoundError, PolicyActionError, SubjectUnknownError

if TYPE_CHECKING:
    from .core import Policy

Result = dict[str, Any]
_DAY = 86_400.0


def _mapped(exc: Exception) -> PolicyActionError:
    if isinstance(exc, SubjectUnknownError):
        return PolicyActionError("the subject is not known to this device", code="unknown_subject")
    if isinstance(exc, HoldNotFoundError):
        return PolicyActionError("hold_id names no open legal hold", code="unknown_hold")
    return PolicyActionError(str(exc), code="bad_args", bad_input=True)


class RightsActions:
    """Restriction and legal hold over MQTT; needs ``self._policy`` (see PrivacyActions)."""

    _policy: Policy

    async def restrict(self, subject_id: str, *, reason: str, actor: str = "mqtt") -> Result:
        try:
            out = await restriction.restrict(self._policy, subject_id, actor=actor, reason=reason)
        except (SubjectUnknownError, ConsentInputError) as exc:
            raise _mapped(exc) from None
        return {
            "subject_id": subject_id,
            "restricted": True,
            "changed": out.changed,
            "receipt_id": out.receipt_id,
            "unmatchable_ms": round(out.unmatchable_s * 1e3, 3),
        }

    async def unrestrict(self, subject_id: str, *, actor: str = "mqtt") -> Result:
        try:
            out = await restriction.unrestrict(self._policy, subject_id, actor=actor)
        except (SubjectUnknownError, ConsentInputError) as exc:
            raise _mapped(exc) from None
        return {
            "subject_id": subject_id,
            "restricted": False,
            "changed": out.changed,
            "receipt_id": out.receipt_id,
        }

    async def hold(self, subject_id: str | None, *, reason: str, days: int, actor: str = "mqtt") -> Result:
        policy = self._policy
        try:
            h = await holds.set_hold(
                policy, subject_id, reason=reason, expires_at=policy.clock.wall() + days * _DAY, actor=actor
            )
        except ConsentInputError as exc:
            raise _mapped(exc) from None
        return {
            "hold_id": h.hold_id,
            "scope": "device" if h.subject_id is None else "subject",
            "subject_id": h.subject_id,
            "expires_at": h.expires_at,
        }

    async def release_hold(self, hold_id: str, *, actor: str = "mqtt") -> Result:
        try:
            ran = await holds.release_hold(self._policy, hold_id, actor=actor)
        except HoldNotFoundError as exc:
            raise _mapped(exc) from None
        return {"hold_id": hold_id, "released": True, "erasures_run": ran}
