"""Declaring config fields: every field carries a description and its bounds."""

from __future__ import annotations

import dataclasses
from typing import Any


def setting(
    default: Any = dataclasses.MISSING,
    *,
    doc: str,
    ge: float | None = None,
    le: float | None = None,
    gt: float | None = None,
    secret: bool = False,
    factory: Any = dataclasses.MISSING,
) -> Any:
    """A dataclass field for a config section.

    ``doc`` is required: it is printed by ``facegate config example`` and
    ``facegate config check``. ``ge``/``le``/``gt`` bound numbers (and the
    length of tuples). ``secret`` masks the value whenever config is rendered.
    """
    meta = {"doc": doc, "ge": ge, "le": le, "gt": gt, "secret": secret}
    if factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=factory, metadata=meta)
    if default is dataclasses.MISSING:
        return dataclasses.field(metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


class FieldError(ValueError):
    """A cross-field rule failed; ``key`` is relative to the section that raised it."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(reason)
        self.key = key
        self.reason = reason
