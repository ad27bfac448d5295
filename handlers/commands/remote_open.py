"""The ``open`` verb through the access path (component ``access.remote_open``).

Binds ``open`` to :class:`facegate.handlers.access.remote.RemoteOpen` when the
device has one (it replaces the door-only binding): optional args ``subject``
(a subject id) and ``group`` (an access group) are authorised like a face; the
reply carries the decision's id and reason codes only.
"""

from __future__ import annotations

from collections.abc import Mapping

from .errors import VerbFailed
from .verbs import Invocation, Result, VerbTable


def bind_remote_open(table: VerbTable, components: Mapping[str, object]) -> None:
    """Bind ``open`` to the remote-open path if the component is present."""
    from ..access.remote import RemoteOpen, RemoteOpenDenied  # noqa: PLC0415  # optional part
    from ..door.errors import DoorError  # noqa: PLC0415  # optional part

    remote = components.get("access.remote_open")
    if not isinstance(remote, RemoteOpen):
        return
    opener = remote

    async def open_(inv: Invocation) -> Result:
        subject = inv.args.get("subject")
        group = inv.args.get("group")
        try:
            decision = await opener.open(
                cause=inv.cause,
                operator=inv.operator,
                subject=str(subject) if subject is not None else None,
                group=str(group) if group is not None else None,
            )
        except RemoteOpenDenied as exc:
            code = "locked_down" if exc.decision.reason == "lockdown" else exc.decision.reason
            raise VerbFailed(f"remote open denied: {exc.decision.reason}", code=code) from None
        except DoorError as exc:
            raise VerbFailed(f"door: {exc}") from None
        return {"opened": True, "decision": decision.event_id, "reason": decision.reason}

    table.bind("open", open_)
