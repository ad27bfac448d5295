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

from ..storage.errors import TamperError
from .collection import check_subject_id
from .core import Policy
from .device_keys import SNAPSHOT, device_secret
from .errors import PolicyError, SnapshotsDisabledError

MAX_SNAPSHOT_BYTES = 512 * 1024


async def put_snapshot(policy: Policy, *, decision_id: str, subject_id: str | None, image: bytes) -> str:
    """Store an encrypted decision snapshot (encoded face crop); returns its id."""
    if not policy.privacy.decision_snapshots:
        raise SnapshotsDisabledError("decision snapshots are off (privacy.decision_snapshots)")
    check_subject_id(decision_id, "decision id")
    if subject_id is not None:
        check_subject_id(subject_id, "subject id")
    if not image or len(image) > MAX_SNAPSHOT_BYTES:
        raise PolicyError(f"snapshot must be 1..{MAX_SNAPSHOT_BYTES} bytes")
    key = await device_secret(policy.store, SNAPSHOT)
    async with policy.store.transaction() as tx:
        return await policy.store.snapshots.put(
            tx, key=key, decision_id=decision_id, subject_id=subject_id, image=image
        )


async def get_snapshot(policy: Policy, snapshot_id: str) -> bytes:
    """Decrypt a stored snapshot (operator review). PolicyError if missing or tampered."""
    key = await device_secret(policy.store, SNAPSHOT)
    try:
        image = await policy.store.snapshots.get(snapshot_id, key=key)
    except TamperError:
        raise PolicyError(f"snapshot {snapshot_id} failed authentication") from None
    if image is None:
        raise PolicyError(f"no snapshot {snapshot_id} (expired or never stored)")
    return image
