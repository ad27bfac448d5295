"""Live KEK rotation: what the ``keys/rotate`` command calls on a running device."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import structlog

from .errors import RotationError
from .kek import KekSourceKind
from .rotate import ExtraRewrap, rotate_kek
from .store import kek_source_from_config

if TYPE_CHECKING:
    from ..runtime.config.storage import StorageSection
    from .db import Publish

_log = structlog.get_logger("facegate.storage")


class LiveKeyRotation:
    """Rotates the KEK while the device runs (key-file sources only).

    The protocol of :func:`~facegate.storage.rotate.rotate_kek` is crash-safe
    and the running store follows it (it loads ``<kek_file>.next`` when a
    rotation target appears), so enrolments during the rotation stay readable.
    Environment and credential KEKs live outside the device: their new key
    must be installed out of band, so the running device refuses and names
    the CLI to use. ``extra`` re-wraps other KEK-wrapped secrets in the final
    transaction (the policy adds its device signing key).
    """

    def __init__(
        self, section: StorageSection, *, publish: Publish | None, extra: tuple[ExtraRewrap, ...] = ()
    ) -> None:
        self._section = section
        self._publish = publish
        self._lock = asyncio.Lock()
        self.extra = extra

    async def rotate(self, *, actor: str) -> dict[str, Any]:
        """Rotate now; returns ids (8-char prefixes) and counts, never key material.

        Raises :class:`RotationError` (with ``code``) when it cannot run here.
        """
        source = kek_source_from_config(self._section)
        if source.kind is not KekSourceKind.FILE:
            raise RotationError(
                f"the KEK comes from the {source.describe()}: the new key must be installed out of "
                "band; run 'facegate keys rotate --new-key-file FILE' and install it",
                code="not_supported_while_running",
            )
        if self._lock.locked():
            raise RotationError("a key rotation is already running", code="busy")
        async with self._lock:
            report = await rotate_kek(
                self._section.path,
                source,
                publish=self._publish,
                actor=actor,
                rewrap_extra=self.extra,
            )
        _log.info("storage.kek_rotated_live", key_source=source.describe(), subjects=report.total)
        return {
            "from": report.old_kek_id[:8],
            "to": report.new_kek_id[:8],
            "subjects": report.total,
        }
