"""What a 1:N search returns: subjects with their best template and exact score."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Match:
    """The best template of one subject and its exact cosine score."""

    subject_id: str
    template_id: str
    score: float


@dataclass(frozen=True, slots=True)
class SearchResult:
    """Up to k subjects, best first, with exact scores. Never contains an embedding."""

    matches: tuple[Match, ...]
    subjects: int
    templates: int

    @property
    def best(self) -> Match | None:
        return self.matches[0] if self.matches else None

    @property
    def runner_up(self) -> Match | None:
        return self.matches[1] if len(self.matches) > 1 else None
