"""The privacy actions' licence check (the composition root passes it to ``PrivacyActions``)."""

from __future__ import annotations

import asyncio

from ...runtime.clock import Clock
from .errors import LicenceRequired
from .manager import LicenceManager


class EnrolmentGate:
    """The privacy actions' licence check; after a licence arrives, waits for the deferred gallery.

    Without the wait, an enrolment made in the moment between a licence install and the
    gallery load would be stored but not reach the live matcher.
    """

    def __init__(
        self, manager: LicenceManager, gallery_loaded: asyncio.Event | None, *, clock: Clock
    ) -> None:
        self._manager = manager
        self._loaded = gallery_loaded
        self._clock = clock

    async def admit_enrolment(self, subject_id: str | None) -> None:
        await self._manager.admit_enrolment(subject_id)
        if self._loaded is None or self._loaded.is_set():
            return
        waiter = asyncio.create_task(self._loaded.wait(), name="licence.enrol.gallery_wait")
        timer = asyncio.create_task(self._clock.sleep(30.0), name="licence.enrol.gallery_timeout")
        try:
            await asyncio.wait({waiter, timer}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
            timer.cancel()
        if not self._loaded.is_set():
            raise LicenceRequired("the gallery is still loading after the licence arrived", code="not_ready")
