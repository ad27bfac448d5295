"""What the policy's rule modules need of the policy facade, as a protocol.

:mod:`.restriction`, :mod:`.holds` and :mod:`.reconsent` take a :class:`PolicyView`
instead of importing :class:`~facegate.policy.core.Policy`, so that ``core`` imports
them and none of them imports ``core``: the dependency runs one way (no import cycle).
``Policy`` satisfies this protocol structurally; mypy checks it where ``core`` passes ``self``.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from ..runtime.clock import Clock
from ..runtime.config.privacy import PrivacySection
from ..storage import Store, TemplateSink
from ..storage.live_matcher import LiveMatcher
from .consent import ConsentRegistry
from .outcomes import ErasureOutcome


class PolicyView(Protocol):
    """The facade's state and the three operations the rule modules call back."""

    store: Store
    privacy: PrivacySection
    clock: Clock
    consents: ConsentRegistry
    lock: asyncio.Lock
    live: LiveMatcher

    @property
    def sink(self) -> TemplateSink | None: ...

    async def is_enrolled(self, subject_id: str) -> bool: ...

    async def reload(self, subject_id: str) -> None: ...

    async def erase_locked(
        self,
        subject_id: str,
        *,
        actor: str,
        reason: str,
        purpose: str | None = None,
        withdraw: bool = False,
    ) -> ErasureOutcome: ...
