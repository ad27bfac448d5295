"""The data-subject rights as MQTT command verbs (``Parts.privacy`` of the composition root).

:class:`PrivacyActions` adapts the :class:`~facegate.policy.Policy` API to the
command layer's ``PrivacyActions`` protocol (``facegate.handlers.commands.verbs``).
The policy decides what personal data is processed, so the adapter lives here:

* ``enroll(image, consent_ref=, subject_id=, actor=)``: ``consent_ref`` must
  name an ACTIVE biometric consent for ``access_control`` of that subject (the
  subject defaults to the consent's); then :func:`enrol_images` checks the
  full enrolment rule (age, guardian) BEFORE the image is decoded or embedded;
* ``erase`` / ``withdraw``: :meth:`Policy.erase_subject`, :meth:`Policy.withdraw_consent`,
  :meth:`Policy.withdraw_subject` (unmatchable before the reply is sent);
* ``rectify``: attributes only (allow-list); a value of ``null`` removes the
  attribute. Display names are never accepted over MQTT (they would travel in
  a broker payload);
* ``export``: the signed bundle holds personal data, so it is only ever
  returned encrypted to the requester's X25519 key (``recipient_key_b64``);
  without a key the reply is a summary of counts and ids.

Every reply holds ids and counts only, never a name, attribute value, image or
embedding. Errors are the policy's own :class:`~.errors.PolicyActionError`
with a stable ``code`` (``consent_required``, ``unknown_consent``,
``consent_mismatch``, ``unknown_subject``, ``invalid_transition``,
``image_rejected:<reason>``, ``bad_args``, ``busy``); the command layer maps
them to reply codes.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

import structlog
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from ..handlers.recognition.errors import ImageRejected, RecognitionError
from ..storage.enrolment import EnrolResult
from ..storage.errors import ImageEnrolsAnotherSubjectError, InvalidInputError, OutboxFullError, StorageError
from .consent import ACCESS_CONTROL
from .consent_model import ConsentKind
from .core import ErasureOutcome, Policy
from .device_keys import key_id
from .errors import (
    ConsentInputError,
    ConsentNotFoundError,
    ConsentRequiredError,
    InvalidTransitionError,
    PolicyActionError,
    PolicyError,
    SubjectRestrictedError,
    SubjectUnknownError,
)
from .image_files import ImageEnrolReport, ImageFileEmbedder, ImageStatus, enrol_image_files
from .images import EmbeddedImage, enrol_images
from .rights import export_subject
from .rights_actions import RightsActions

_log = structlog.get_logger("facegate.policy.actions")

Result = dict[str, Any]
BUNDLE_ALG = "X25519-HKDF-SHA256-AES256GCM"
_BUNDLE_INFO = b"facegate/export-bundle/v1"
_MAPPED = (PolicyError, StorageError, RecognitionError)
"""Errors that become a reply code; anything else is a bug and propagates."""


Embedder = Callable[[bytes], Awaitable[EmbeddedImage]]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


class EnrolmentGate(Protocol):
    """The licence's enrolment check (facegate.policy.licence.LicenceManager)."""

    async def admit_enrolment(self, subject_id: str | None) -> None: ...


class PrivacyActions(RightsActions):
    """The rights verbs over one device's opened policy (see module docstring).

    ``embedder`` is the image embedder (``RecognitionEngine.embed_image``), or
    None when recognition is not part of this device (``enroll`` then fails
    with ``not_available``).
    """

    def __init__(
        self,
        policy: Policy,
        embedder: Embedder | None,
        *,
        licence: EnrolmentGate | None = None,
        image_files: ImageFileEmbedder | None = None,
    ) -> None:
        self._policy = policy
        self._embedder = embedder
        self._image_files = image_files
        """Decode-then-embed (the engine): the photo's keyed digest is recorded, so the same
        photo again is ``already_enrolled`` and a photo enrolling another subject is refused."""
        self.licence = licence
        """Enrolment needs a usable licence and respects max_subjects (when licensing is on)."""

    # -- enrol ------------------------------------------------------------------------------

    async def enroll(
        self, image: bytes, *, consent_ref: str, subject_id: str | None, actor: str = "mqtt"
    ) -> Result:
        policy = self._policy
        embed = self._embedder
        if embed is None:
            raise PolicyActionError(
                "this device has no recognition engine to enrol with", code="not_available"
            )
        if self.licence is not None:
            await self.licence.admit_enrolment(subject_id)  # LicenceRequired: a coded refusal
        try:
            consent = await policy.consents.get(consent_ref)
        except ConsentNotFoundError:
            raise PolicyActionError(
                "consent_ref names no consent on this device", code="unknown_consent"
            ) from None
        sid = subject_id or consent.subject_id
        if consent.subject_id != sid:
            raise PolicyActionError("consent_ref belongs to another subject", code="consent_mismatch")
        usable = (
            consent.kind is ConsentKind.BIOMETRIC
            and consent.purpose == ACCESS_CONTROL
            and consent.is_active(policy.clock.wall())
        )
        if not usable:
            raise PolicyActionError(
                f"consent_ref is a {consent.state.value} {consent.kind.value} consent for "
                f"{consent.purpose}; enrolment needs an active biometric consent for {ACCESS_CONTROL}",
                code="consent_required",
            )
        already = 0
        try:
            if self._image_files is not None:
                report = await enrol_image_files(
                    policy, sid, [("image", image)], self._image_files, actor=actor, raise_failures=True
                )
                if report.count(ImageStatus.ENROLS_ANOTHER_SUBJECT):
                    raise ImageEnrolsAnotherSubjectError(
                        "the image already enrols another subject (one photo cannot enrol two people)"
                    )
                already = report.count(ImageStatus.ALREADY_ENROLLED)
                res: EnrolResult | ImageEnrolReport = report
            else:
                res = await enrol_images(policy, sid, [image], embed, actor=actor)
        except _MAPPED as exc:
            raise _mapped(exc) from None
        _log.info("policy.actions.enrolled", subject_id=sid, templates=len(res.template_ids))
        return {
            "subject_id": sid,
            "consent_ref": consent_ref,
            "templates_added": len(res.template_ids),
            "template_ids": list(res.template_ids),
            "created_subject": res.created_subject,
            "already_enrolled": already,
        }

    # -- erase / withdraw -----------------------------------------------------------------------

    async def erase(self, subject_id: str, *, reason: str, actor: str = "mqtt") -> Result:
        try:
            out = await self._policy.erase_subject(subject_id, actor=actor, reason=reason)
        except _MAPPED as exc:
            raise _mapped(exc) from None
        return _erasure(out.subject_id, out)

    async def withdraw(self, subject_id: str, *, consent_ref: str | None, actor: str = "mqtt") -> Result:
        policy = self._policy
        try:
            if consent_ref is None:
                out = await policy.withdraw_subject(subject_id, actor=actor)
                return _erasure(subject_id, out) | {"withdrawn": "all"}
            consent = await policy.consents.get(consent_ref)
        except _MAPPED as exc:
            raise _mapped(exc) from None
        if consent.subject_id != subject_id:
            raise PolicyActionError("consent_ref belongs to another subject", code="consent_mismatch")
        try:
            record, erased = await policy.withdraw_consent(consent_ref, actor=actor)
        except _MAPPED as exc:
            raise _mapped(exc) from None
        result: Result = {
            "subject_id": subject_id,
            "withdrawn": record.consent_id,
            "erased": erased is not None and not erased.deferred,
        }
        if erased is not None:
            result |= _erasure(subject_id, erased)
        return result

    # -- rectify ----------------------------------------------------------------------------------

    async def rectify(self, subject_id: str, attributes: Mapping[str, Any], *, actor: str = "mqtt") -> Result:
        if "display_name" in attributes or "name" in attributes:
            raise PolicyActionError(
                "names are not accepted over MQTT; use `facegate subjects rectify --name`",
                code="bad_args",
                bad_input=True,
            )
        remove = [k for k, v in attributes.items() if v is None]
        update = {k: v for k, v in attributes.items() if v is not None}
        try:
            await self._policy.rectify(
                subject_id, actor=actor, set_attributes=update, remove_attributes=remove
            )
        except _MAPPED as exc:
            raise _mapped(exc) from None
        return {"subject_id": subject_id, "set": len(update), "removed": len(remove)}

    # -- export -------------------------------------------------------------------------------------

    async def export(
        self, subject_id: str, *, recipient_key: bytes | None = None, actor: str = "mqtt"
    ) -> Result:
        try:
            bundle = await export_subject(self._policy, subject_id, actor=actor)
        except _MAPPED as exc:
            raise _mapped(exc) from None
        envelope = json.loads(bundle)
        body = json.loads(envelope["payload"])
        summary: Result = {
            "subject_id": subject_id,
            "export_id": body["export_id"],
            "key_id": envelope["key_id"],
            "sha256": hashlib.sha256(bundle).hexdigest(),
            "enrolled": bool(body["subject"].get("enrolled")),
            "consents": len(body["consents"]),
            "templates": (body["enrolment"] or {}).get("template_count", 0),
            "access_events": len(body["access_history"]),
            "restricted": bool(body["subject"]["processing"]["restricted"]),
        }
        if recipient_key is None:
            summary["bundle"] = None
            summary["note"] = "give recipient_key_b64 (X25519) to receive the signed bundle, encrypted"
            return summary
        summary["bundle"] = seal_bundle(bundle, subject_id, recipient_key)
        return summary


def _erasure(subject_id: str, out: ErasureOutcome) -> Result:
    return {
        "subject_id": subject_id,
        "receipt_id": None if out.receipt is None else out.receipt.receipt_id,
        "templates_erased": 0 if out.receipt is None else int(out.receipt.templates),
        "consents_withdrawn": int(out.consents_withdrawn),
        "unmatchable_ms": round(float(out.unmatchable_s) * 1e3, 3),
        "deferred": out.deferred,
    }


def _mapped(exc: Exception) -> PolicyActionError:
    """The stable reply code of a policy, storage or recognition error."""
    if isinstance(exc, ConsentRequiredError):
        return PolicyActionError(f"missing consent: {exc.missing}", code="consent_required")
    if isinstance(exc, SubjectUnknownError):
        return PolicyActionError("the subject is not known to this device", code="unknown_subject")
    if isinstance(exc, ConsentNotFoundError):
        return PolicyActionError("consent_ref names no consent on this device", code="unknown_consent")
    if isinstance(exc, SubjectRestrictedError):
        return PolicyActionError(str(exc), code="restricted")
    if isinstance(exc, InvalidTransitionError):
        return PolicyActionError(str(exc), code="invalid_transition")
    if isinstance(exc, ImageRejected):
        reason = exc.reason_code
        return PolicyActionError(f"image rejected: {reason}", code=f"image_rejected:{reason}")
    if isinstance(exc, ImageEnrolsAnotherSubjectError):  # before InvalidInputError: its own code
        return PolicyActionError(str(exc), code=exc.code, bad_input=True)
    if isinstance(exc, ConsentInputError | InvalidInputError):
        return PolicyActionError(str(exc), code="bad_args", bad_input=True)
    if isinstance(exc, OutboxFullError):
        return PolicyActionError("the event outbox is full; try again when the broker drains it", code="busy")
    return PolicyActionError(f"{type(exc).__name__}: {exc}")


# -- encrypted export bundles ---------------------------------------------------------------------


def _bundle_key(shared: bytes, subject_id: str, eph: bytes, recipient: bytes) -> bytes:
    info = b"\x00".join((_BUNDLE_INFO, subject_id.encode(), eph, recipient))
    return HKDF(algorithm=SHA256(), length=32, salt=None, info=info).derive(shared)


def seal_bundle(bundle: bytes, subject_id: str, recipient_public_key: bytes) -> Result:
    """Encrypt a signed export bundle to a recipient X25519 public key (32 raw bytes)."""
    try:
        recipient = X25519PublicKey.from_public_bytes(recipient_public_key)
    except ValueError:
        raise PolicyActionError(
            "recipient_key_b64 must be 32 raw X25519 bytes", code="bad_args", bad_input=True
        ) from None
    eph = X25519PrivateKey.generate()
    eph_pub = eph.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    key = _bundle_key(eph.exchange(recipient), subject_id, eph_pub, recipient_public_key)
    nonce = os.urandom(12)
    return {
        "alg": BUNDLE_ALG,
        "recipient_key_id": key_id(recipient_public_key),
        "ephemeral_public_key": _b64(eph_pub),
        "nonce": _b64(nonce),
        "ciphertext": _b64(AESGCM(key).encrypt(nonce, bundle, subject_id.encode())),
    }


def open_bundle(block: Mapping[str, Any], subject_id: str, private_key: X25519PrivateKey) -> bytes:
    """The recipient's side of :func:`seal_bundle`: the signed envelope (check it with verify_export)."""
    eph_pub = base64.b64decode(block["ephemeral_public_key"])
    rpub = private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    key = _bundle_key(
        private_key.exchange(X25519PublicKey.from_public_bytes(eph_pub)), subject_id, eph_pub, rpub
    )
    return AESGCM(key).decrypt(
        base64.b64decode(block["nonce"]), base64.b64decode(block["ciphertext"]), subject_id.encode()
    )
