"""The policy's result and input records, shared by :mod:`.core` and its rule modules."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..storage import ErasureReceipt
from .collection import AttrValue


@dataclass(frozen=True)
class EnrolItem:
    """One subject of a bulk import."""

    subject_id: str
    embeddings: Any
    display_name: str | None = None
    attributes: Mapping[str, AttrValue] | None = None
    sources: Sequence[bytes] | None = None
    """The keyed digest of each embedding's image (storage/image_sources.py), or None."""


@dataclass(frozen=True)
class ErasureOutcome:
    """What an erasure did. ``unmatchable_s``: call start to matcher removal (clock seconds)."""

    subject_id: str
    receipt: ErasureReceipt | None
    consents_withdrawn: int
    unmatchable_s: float
    total_s: float
    deferred: bool = False
    """A legal hold kept the data: the subject is unmatchable, the erasure runs when it lapses."""
