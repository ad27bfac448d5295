"""Privacy receipts: one :class:`PrivacyEvent` per privacy-relevant change.

A receipt is written to the storage outbox inside the transaction that made
the change (so it is delivered over MQTT at least once, even after a crash)
and published on the bus after the commit. It carries ids and counts only:
never a name, an attribute, an embedding or an image.

The MQTT link delivers outbox rows; it must not append PrivacyEvents from the
bus a second time (they are already in the outbox).
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from ..runtime.clock import utc_iso
from ..runtime.events import PrivacyEvent, PrivacyKind
from ..storage import EventClass, Store, Tx, uuid7_str

TOPIC = "event/privacy"
"""Outbox topic suffix of privacy receipts (the link prefixes ``<prefix>/<device_id>/``)."""


def payload(event: PrivacyEvent) -> bytes:
    """The receipt's wire form: compact JSON, sorted keys, ids and counts only."""
    body = {
        "kind": event.kind.value,
        "at": utc_iso(event.at),
        "subject_id": event.subject_id,
        "counts": dict(event.counts),
        "receipt_id": event.receipt_id,
        "detail": event.detail,
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


async def emit(
    store: Store,
    tx: Tx,
    kind: PrivacyKind,
    *,
    subject_id: str | None = None,
    counts: Mapping[str, int] | None = None,
    receipt_id: str | None = None,
    detail: str = "",
    klass: EventClass = EventClass.PRIVACY,
) -> PrivacyEvent:
    """Append the receipt to the outbox in ``tx`` and publish it after the commit.

    ``klass=EventClass.PROVISIONING`` for grants and activations (bounded and
    coalesced apart from privacy events, see :mod:`facegate.storage.outbox`).
    """
    event = PrivacyEvent(
        at=tx.at,
        kind=kind,
        subject_id=subject_id,
        counts=tuple(sorted((counts or {}).items())),
        receipt_id=receipt_id or uuid7_str(),
        detail=detail,
    )
    await store.outbox.append_in(tx, TOPIC, payload(event), klass=klass)
    tx.publish_after_commit(event)
    return event
