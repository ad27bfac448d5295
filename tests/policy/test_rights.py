"""Data-subject rights: signed export, verification with only the public key, rectification."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from facegate.policy import Policy, decrypt_templates, device_public_key, export_subject, verify_export
from facegate.policy.device_keys import rewrap_secrets
from facegate.policy.errors import ConsentInputError, ExportVerificationError, SubjectUnknownError
from facegate.storage import EventClass, KekSource, Store
from facegate.storage.crypto import new_key
from facegate.storage.keys import ACTIVE, set_meta

from .conftest import MODEL, consent_adult, embeddings


async def _enrolled(policy: Policy) -> np.ndarray:
    await consent_adult(policy, "X1")
    emb = embeddings(3, seed=21)
    await policy.enrol_subject(
        "X1", emb, MODEL, actor="op", display_name="Xavier", attributes={"role": "staff"}
    )
    await policy.store.outbox.append(
        "event/access",
        json.dumps({"subject_id": "X1", "decision": "granted", "reason": "match", "score": 0.71}).encode(),
        klass=EventClass.ACCESS,
    )
    await policy.store.outbox.append(
        "event/access",
        json.dumps({"subject_id": "other", "decision": "granted"}).encode(),
        klass=EventClass.ACCESS,
    )
    return emb


@pytest.mark.asyncio
async def test_export_verifies_with_only_the_public_key_and_tamper_fails(policy: Policy) -> None:
    await _enrolled(policy)
    bundle = await export_subject(policy, "X1", actor="dpo")
    pub = await device_public_key(policy.store)
    body = verify_export(bundle, pub)
    assert body["subject"]["display_name"] == "Xavier" and body["subject"]["attributes"] == {"role": "staff"}
    assert body["enrolment"]["template_count"] == 3 and body["enrolment"]["models"] == [MODEL]
    assert [c["state"] for c in body["consents"]] == ["active"]
    assert [h["decision"] for h in body["access_history"]] == ["granted"]
    assert body["templates"] is None and body["device_id"] == "gate-1"
    # Tampering: change one character of the payload.
    env = json.loads(bundle)
    env["payload"] = env["payload"].replace("Xavier", "XavieR")
    with pytest.raises(ExportVerificationError, match="modified"):
        verify_export(json.dumps(env), pub)
    # Tampering the signature, or another device's key, fails too.
    env = json.loads(bundle)
    sig = bytearray(base64.b64decode(env["signature"]))
    sig[0] ^= 1
    env["signature"] = base64.b64encode(bytes(sig)).decode()
    with pytest.raises(ExportVerificationError):
        verify_export(json.dumps(env), pub)
    with pytest.raises(ExportVerificationError):
        verify_export(bundle, bytes(32))
    with pytest.raises(ExportVerificationError):
        verify_export(b"not json", pub)
    row = await policy.store.db.fetchone("SELECT detail FROM audit WHERE action = 'export'")
    assert row is not None and '"templates_included":false' in row[0]


@pytest.mark.asyncio
async def test_templates_only_on_request_and_encrypted_to_recipient(policy: Policy) -> None:
    emb = await _enrolled(policy)
    with pytest.raises(ConsentInputError):
        await export_subject(policy, "X1", actor="dpo", include_templates=True)
    recipient = X25519PrivateKey.generate()
    rpub = recipient.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    bundle = await export_subject(
        policy, "X1", actor="dpo", include_templates=True, recipient_public_key=rpub
    )
    body = verify_export(bundle, await device_public_key(policy.store))
    block = body["templates"]
    assert block["alg"] == "X25519-HKDF-SHA256-AES256GCM" and block["shape"] == [3, 128]
    # No plaintext float bytes of any template in the bundle.
    raw = bundle.decode()
    for row in emb:
        assert base64.b64encode(row.tobytes()[:24]).decode()[:16] not in raw
    got = decrypt_templates(block, "X1", recipient)
    np.testing.assert_array_equal(np.sort(got, axis=0), np.sort(emb, axis=0))
    with pytest.raises(ExportVerificationError):
        decrypt_templates(block, "X1", X25519PrivateKey.generate())


@pytest.mark.asyncio
async def test_signing_key_persists_across_restarts_and_lives_in_the_vault(
    policy: Policy, kek: KekSource
) -> None:
    pub = await device_public_key(policy.store)
    row = await policy.store.db.fetchone(
        "SELECT value FROM vault.key_meta WHERE name = 'policy.secret.signing'"
    )
    assert row is not None
    async with Store(policy.store.db.path, kek, clock=policy.clock) as again:
        assert await device_public_key(again) == pub


@pytest.mark.asyncio
async def test_rectification_is_audited_and_receipted(policy: Policy) -> None:
    await _enrolled(policy)
    await policy.rectify(
        "X1",
        actor="dpo",
        display_name="Xavier B.",
        set_attributes={"department": "ops"},
        remove_attributes=["role"],
    )
    rec = await policy.store.gallery.get("X1")
    assert rec.display_name == "Xavier B." and rec.attributes == {"department": "ops"}
    row = await policy.store.db.fetchone("SELECT detail FROM audit WHERE action = 'rectify'")
    assert row is not None and "Xavier" not in row[0]
    kinds = [
        json.loads(bytes(p))["kind"]
        for (p,) in await policy.store.db.fetchall("SELECT payload FROM outbox WHERE klass = 'privacy'")
    ]
    assert "rectification" in kinds
    with pytest.raises(ConsentInputError):
        await policy.rectify("X1", actor="dpo", set_attributes={"ethnicity": "x"})
    with pytest.raises(SubjectUnknownError):
        await policy.rectify("nobody", actor="dpo", display_name="N")


@pytest.mark.asyncio
async def test_device_keys_survive_a_kek_change(policy: Policy) -> None:
    pub = await device_public_key(policy.store)
    ring = policy.store.keys
    new_kid = ring.add(new_key())
    async with policy.store.transaction() as tx:  # what rotate_kek's final step does
        assert await rewrap_secrets(tx, ring, new_kid) == 1
        await set_meta(tx, ACTIVE, new_kid)
    row = await policy.store.db.fetchone(
        "SELECT value FROM vault.key_meta WHERE name = 'policy.secret.signing'"
    )
    assert row is not None and str(row[0]).startswith(new_kid)
    ring._keks = {new_kid: ring._keks[new_kid]}  # the old KEK is gone after rotation
    assert await device_public_key(policy.store) == pub
