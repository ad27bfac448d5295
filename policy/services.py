"""The policy's small services and hooks, built by the composition root (``facegate.runtime.app.root``).

* :class:`MatchRecorder` (Service ``policy.match_recorder``) records each granted
  match, so template retention counts from the last use;
* :func:`snapshot_sink` is what recognition gets only when
  ``privacy.decision_snapshots`` is on: every face crop is sealed and kept at
  most ``snapshot_hours``.

The retention sweeper (:mod:`.retention`) and the gallery watcher (:mod:`.watch`)
are services of their own.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from ..runtime.bus import EventBus
from ..runtime.events import AccessDecision, Decision
from .core import Policy
from .snapshots import put_snapshot


class MatchRecorder:
    """Records each granted match (subject id and time only, in the subject row the policy owns).

    Subscribes to :class:`AccessDecision` (never dropped).
    """

    def __init__(self, policy: Policy, bus: EventBus) -> None:
        self._policy = policy
        self._bus = bus

    @property
    def name(self) -> str:
        return "policy.match_recorder"

    async def run(self) -> None:
        async with self._bus.subscribe(AccessDecision, name=self.name, maxsize=1024) as sub:
            async for decision in sub:
                # a remote open naming a subject is not a face match (handlers/access/remote.py)
                face = decision.reason != "remote_open"
                # a bystander seen in the frame (at_door False) did not use the gate
                if (decision.decision is Decision.GRANTED and decision.subject_id and face
                        and decision.at_door):
                    await self._policy.record_match(decision.subject_id, decision.at)


def snapshot_sink(policy: Policy) -> Callable[[AccessDecision, bytes], Awaitable[None]]:
    """The sink recognition calls with each decision's face crop (sealed by the policy)."""

    async def sink(decision: AccessDecision, crop: bytes) -> None:
        await put_snapshot(policy, decision_id=decision.event_id, subject_id=decision.subject_id, image=crop)

    return sink
