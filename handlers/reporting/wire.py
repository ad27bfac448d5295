"""What an outbox row looks like on the wire: its topic and payload, a function of the row.

:class:`RowWire` is the drain's last step before the broker (:mod:`.durable`):

* a row the sink wrote carries its full topic and is sent as stored, except that an
  ``event/access`` payload gets the subject's current display name when names are on
  (:class:`.names.SubjectNames`; names are added at publish time, never stored);
* a row another writer committed (policy receipts, the CLI in another process) carries a
  topic suffix and may lack ``event_id`` and ``device_id``: it is completed
  deterministically (``event_id`` = the row's id), so a resend is byte-identical.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Protocol

from ...runtime.mqtt.payloads import encode
from ...storage.outbox import EventClass, OutboxRecord


class NameSource(Protocol):
    """Display names added at publish time (:class:`.names.SubjectNames`): prefetch, then get."""

    async def prefetch(self, subject_ids: Iterable[str | None]) -> None: ...

    def get(self, subject_id: str) -> str | None: ...


class RowWire:
    """Topic and payload of outbox rows for one device (``base_topic`` = ``<prefix>/<device>/event``)."""

    def __init__(self, *, base_topic: str, device_id: str, names: NameSource | None = None) -> None:
        self._base = base_topic
        self._device_id = device_id
        self._names = names

    async def prefetch(self, rows: Sequence[OutboxRecord]) -> None:
        """Load the display names a window of rows will need (no-op when names are off)."""
        if self._names is not None:
            await self._names.prefetch(_subject(r) for r in rows if r.klass is EventClass.ACCESS)

    def wire(self, row: OutboxRecord) -> tuple[str, bytes]:
        """The topic and payload a row is published with (see module doc)."""
        if row.topic.startswith(self._base.rsplit("/", 1)[0] + "/"):
            if self._names is not None and row.klass is EventClass.ACCESS:
                return row.topic, self._with_name(self._names, row.payload)
            return row.topic, row.payload  # a full topic (written by the sink)
        # A suffix written by another writer (policy receipts): complete it.
        topic = f"{self._base}/{row.topic}"
        try:
            body = json.loads(row.payload)
        except ValueError:
            return topic, row.payload
        if not isinstance(body, dict) or ("event_id" in body and "device_id" in body):
            return topic, row.payload
        body.setdefault("event_id", row.event_id)
        body.setdefault("device_id", self._device_id)
        return topic, encode(body)

    @staticmethod
    def _with_name(names: NameSource, payload: bytes) -> bytes:
        try:
            body = json.loads(payload)
        except ValueError:
            return payload
        sid = body.get("subject_id") if isinstance(body, dict) else None
        name = names.get(sid) if isinstance(sid, str) else None
        if name is None:  # unknown, erased or nameless: no field
            return payload
        body["name"] = name
        return encode(body)


def _subject(row: OutboxRecord) -> str | None:
    """The subject id of an access row (None when absent or unreadable)."""
    try:
        body = json.loads(row.payload)
    except ValueError:
        return None
    sid = body.get("subject_id") if isinstance(body, dict) else None
    return sid if isinstance(sid, str) else None
