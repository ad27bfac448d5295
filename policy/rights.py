"""Data-subject access and copy (GDPR Art. 15/20, PIPL Art. 45): signed export bundles.

Bundle format (``facegate.export/v1``), a JSON envelope::

    {"format": "facegate.export/v1", "alg": "Ed25519", "key_id": "...",
     "public_key": "<b64>", "payload": "<canonical JSON text>", "signature": "<b64>"}

``signature`` is Ed25519 over the UTF-8 bytes of ``payload``. The payload
holds the subject record (display name, attributes, age evidence, dates),
every consent record, enrolment metadata (model ids, dates, template count)
and the access history. Templates are included only on explicit request and
then only encrypted to the recipient's X25519 public key: an ephemeral
X25519 key agreement, HKDF-SHA256 (info binds the subject id and both public
keys) and AES-256-GCM (AAD = subject id). The device never exports a
template in the clear.

:func:`verify_export` needs only the device's public key. The public key in
the envelope is informational; verification always uses the caller's.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import os
from dataclasses import asdict
from typing import Any

import numpy as np
import numpy.typing as npt
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from ..runtime.clock import utc_iso
from ..runtime.events import PrivacyKind
from ..storage import AuditAction, EventClass, image_sources
from ..storage.errors import SubjectNotFoundError
from ..storage.outbox import payloads_naming
from . import receipts
from .core import Policy
from .device_keys import SigningKey, key_id
from .errors import ConsentInputError, ExportVerificationError, SubjectUnknownError
from .restriction import processing_state

FORMAT = "facegate.export/v1"
TEMPLATE_ALG = "X25519-HKDF-SHA256-AES256GCM"
_HISTORY_LIMIT = 10_000


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: Any, what: str) -> bytes:
    try:
        return base64.b64decode(str(text), validate=True)
    except (binascii.Error, ValueError):
        raise ExportVerificationError(f"export {what} is not valid base64") from None


def _iso(at: float | None) -> str | None:
    return None if at is None else utc_iso(at)


def _hkdf(shared: bytes, subject_id: str, eph_pub: bytes, recipient_pub: bytes) -> bytes:
    info = b"\x00".join((b"facegate/export-templates/v1", subject_id.encode(), eph_pub, recipient_pub))
    return HKDF(algorithm=SHA256(), length=32, salt=None, info=info).derive(shared)


def encrypt_templates(
    embeddings: npt.NDArray[np.float32], subject_id: str, recipient_public_key: bytes
) -> dict[str, Any]:
    """Encrypt float32 templates (n, d) to a recipient X25519 public key (32 raw bytes)."""
    try:
        recipient = X25519PublicKey.from_public_bytes(recipient_public_key)
    except ValueError:
        raise ConsentInputError("recipient public key must be 32 raw X25519 bytes") from None
    eph = X25519PrivateKey.generate()
    eph_pub = eph.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    key = _hkdf(eph.exchange(recipient), subject_id, eph_pub, recipient_public_key)
    nonce = os.urandom(12)
    arr = np.ascontiguousarray(embeddings, dtype="<f4")
    ct = AESGCM(key).encrypt(nonce, arr.tobytes(), subject_id.encode())
    return {
        "alg": TEMPLATE_ALG,
        "ephemeral_public_key": _b64(eph_pub),
        "recipient_key_id": key_id(recipient_public_key),
        "nonce": _b64(nonce),
        "ciphertext": _b64(ct),
        "shape": list(arr.shape),
        "dtype": "float32-le",
    }


def decrypt_templates(
    block: dict[str, Any], subject_id: str, recipient_private_key: X25519PrivateKey
) -> npt.NDArray[np.float32]:
    """The recipient's side of :func:`encrypt_templates`."""
    eph_pub = _unb64(block["ephemeral_public_key"], "ephemeral key")
    rpub = recipient_private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    shared = recipient_private_key.exchange(X25519PublicKey.from_public_bytes(eph_pub))
    key = _hkdf(shared, subject_id, eph_pub, rpub)
    try:
        pt = AESGCM(key).decrypt(
            _unb64(block["nonce"], "nonce"), _unb64(block["ciphertext"], "ciphertext"), subject_id.encode()
        )
    except InvalidTag:
        raise ExportVerificationError(
            "templates do not decrypt with this key (wrong key or modified)"
        ) from None
    rows, dim = (int(x) for x in block["shape"])
    return np.frombuffer(pt, dtype="<f4").reshape(rows, dim).astype(np.float32)


async def access_history(policy: Policy, subject_id: str) -> list[dict[str, Any]]:
    """Access events naming ``subject_id`` still within retention (from the outbox, newest first)."""
    rows = await payloads_naming(policy.store.db, EventClass.ACCESS, subject_id, _HISTORY_LIMIT)
    out: list[dict[str, Any]] = []
    for event_id, created_at, text in rows:
        body = json.loads(text)
        keep = {k: body[k] for k in ("decision", "reason", "score", "model_id") if k in body}
        out.append({"event_id": event_id, "at": utc_iso(created_at), **keep})
    return out


async def export_subject(
    policy: Policy,
    subject_id: str,
    *,
    actor: str,
    include_templates: bool = False,
    recipient_public_key: bytes | None = None,
) -> bytes:
    """Build, sign and audit the subject's export bundle; returns the envelope (JSON bytes)."""
    if include_templates and recipient_public_key is None:
        raise ConsentInputError("templates are only exported encrypted: give the recipient's public key")
    try:
        rec = await policy.store.gallery.get(subject_id, include_embeddings=include_templates)
    except SubjectNotFoundError:
        rec = None
    consents = await policy.consents.for_subject(subject_id)
    age = await policy.consents.age(subject_id)
    if rec is None and not consents and age is None:
        raise SubjectUnknownError(f"subject {subject_id} is not known to this device")
    subject: dict[str, Any] = {"subject_id": subject_id, "enrolled": rec is not None}
    if age is not None:
        subject["birth_date"] = None if age.birth_date is None else age.birth_date.isoformat()
        subject["age_band"] = None if age.age_band is None else age.age_band.value
    subject["processing"] = await processing_state(policy, subject_id)
    enrolment: dict[str, Any] | None = None
    templates: dict[str, Any] | None = None
    if rec is not None:
        subject.update(
            display_name=rec.display_name,
            attributes=dict(rec.attributes),
            created_at=_iso(rec.created_at),
            updated_at=_iso(rec.updated_at),
            last_match_at=_iso(rec.last_match_at),
        )
        enrolment = {
            "template_count": len(rec.templates),
            "models": sorted({t.model_id for t in rec.templates}),
            "first_enrolled_at": _iso(min((t.created_at for t in rec.templates), default=None)),
            "last_enrolled_at": _iso(max((t.created_at for t in rec.templates), default=None)),
            "quarantined": sum(t.quarantined for t in rec.templates),
            # How many templates record the image they came from (resumable enrolment);
            # a count only: the keyed image digest never leaves the database.
            "templates_from_recorded_image": await image_sources.count_with_source(
                policy.store.db, subject_id
            ),
        }
        if include_templates and rec.embeddings is not None and recipient_public_key is not None:
            templates = encrypt_templates(rec.embeddings, subject_id, recipient_public_key)
    consent_rows = []
    for c in consents:
        row = asdict(c)
        row.update(
            kind=c.kind.value,
            state=c.state.value,
            method=c.method.value,
            granted_at=_iso(c.granted_at),
            expires_at=_iso(c.expires_at),
            changed_at=_iso(c.changed_at),
        )
        consent_rows.append(row)
    signer = await SigningKey.load(policy.store)
    async with policy.store.transaction() as tx:
        await policy.store.audit(
            tx,
            actor=actor,
            action=AuditAction.EXPORT,
            subject_id=subject_id,
            detail={"templates_included": templates is not None},
        )
        event = await receipts.emit(
            policy.store,
            tx,
            PrivacyKind.EXPORT,
            subject_id=subject_id,
            counts={"templates": 0 if templates is None else int(templates["shape"][0])},
        )
    body = {
        "format": FORMAT,
        "export_id": event.receipt_id,
        "device_id": policy.device_id,
        "generated_at": utc_iso(event.at),
        "subject": subject,
        "consents": consent_rows,
        "enrolment": enrolment,
        "access_history": await access_history(policy, subject_id),
        "templates": templates,
    }
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    envelope = {
        "format": FORMAT,
        "alg": "Ed25519",
        "key_id": signer.key_id,
        "public_key": _b64(signer.public_bytes),
        "payload": text,
        "signature": _b64(signer.sign(text.encode("utf-8"))),
    }
    return json.dumps(envelope, sort_keys=True, indent=1).encode("utf-8")


def verify_export(envelope: bytes | str, public_key: bytes) -> dict[str, Any]:
    """Check an export against the device's Ed25519 public key; return the payload.

    Raises ExportVerificationError if the envelope is malformed, names another
    key, or any byte of the payload or signature was changed.
    """
    try:
        env = json.loads(envelope)
        payload_text, sig_text, fmt = env["payload"], env["signature"], env["format"]
    except (ValueError, KeyError, TypeError):
        raise ExportVerificationError("not a facegate export envelope") from None
    if fmt != FORMAT or not isinstance(payload_text, str):
        raise ExportVerificationError(f"unsupported export format {fmt!r}")
    if not hmac.compare_digest(str(env.get("key_id", "")), key_id(public_key)):
        raise ExportVerificationError("export was signed by a different device key")
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(
            _unb64(sig_text, "signature"), payload_text.encode("utf-8")
        )
    except (InvalidSignature, ValueError):
        raise ExportVerificationError("signature does not match: the export was modified or forged") from None
    body: dict[str, Any] = json.loads(payload_text)
    if body.get("format") != FORMAT:
        raise ExportVerificationError("payload format mismatch")
    return body
