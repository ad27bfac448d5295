"""Decision snapshots: the only image the device may ever persist, and only if turned on.

Raw frames are never written anywhere. When the operator sets
``privacy.decision_snapshots = true``, recognition may keep the face crop of
a decision for review: :func:`put_snapshot` seals it with AES-256-GCM under
the device snapshot key (kept wrapped by the KEK in the key vault, like the
data keys of templates; AAD binds snapshot and decision ids) and the
retention sweeper deletes it after ``snapshot_hours`` (at most 24 h). With
snapshots off, :func:`put_snapshot` refuses and the sweeper deletes any left.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..storage import uuid7_str
from ..storage.crypto import AuthenticationFailed, open_sealed, seal
from .collection import check_subject_id
from .core import Policy
from .device_keys import SNAPSHOT, device_secret
from .errors import PolicyError, SnapshotsDisabledError

MAX_SNAPSHOT_BYTES = 512 * 1024


def _aad(snapshot_id: str, decision_id: str) -> bytes:
    return b"\x00".join((b"facegate/snapshot/v1", snapshot_id.encode(), decision_id.encode()))


async def put_snapshot(policy: Policy, *, decision_id: str, subject_id: str | None, image: bytes) -> str:
    """Store an encrypted decision snapshot (encoded face crop); returns its id."""
    if not policy.privacy.decision_snapshots:
        raise SnapshotsDisabledError("decision snapshots are off (privacy.decision_snapshots)")
    check_subject_id(decision_id, "decision id")
    if subject_id is not None:
        check_subject_id(subject_id, "subject id")
    if not image or len(image) > MAX_SNAPSHOT_BYTES:
        raise PolicyError(f"snapshot must be 1..{MAX_SNAPSHOT_BYTES} bytes")
    key = AESGCM(await device_secret(policy.store, SNAPSHOT))
    snapshot_id = uuid7_str()
    async with policy.store.transaction() as tx:
        await tx.execute(
            "INSERT INTO policy_snapshots(snapshot_id, decision_id, subject_id, created_at, ciphertext) "
            "VALUES (?, ?, ?, ?, ?)",
            (snapshot_id, decision_id, subject_id, tx.at, seal(key, image, _aad(snapshot_id, decision_id))),
        )
    return snapshot_id


async def get_snapshot(policy: Policy, snapshot_id: str) -> bytes:
    """Decrypt a stored snapshot (operator review). PolicyError if missing or tampered."""
    row = await policy.store.db.fetchone(
        "SELECT decision_id, ciphertext FROM policy_snapshots WHERE snapshot_id = ?", (snapshot_id,)
    )
    if row is None:
        raise PolicyError(f"no snapshot {snapshot_id} (expired or never stored)")
    key = AESGCM(await device_secret(policy.store, SNAPSHOT))
    try:
        return open_sealed(key, bytes(row[1]), _aad(snapshot_id, str(row[0])))
    except AuthenticationFailed:
        raise PolicyError(f"snapshot {snapshot_id} failed authentication") from None
