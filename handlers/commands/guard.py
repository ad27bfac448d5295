"""Bounded, non-recursive checks that run on a parsed command before anything recursive.

A JSON document nested ~1000 levels deep still parses (the C decoder guards
its own recursion, and a ``RecursionError`` there is refused as ``bad_json``),
but then makes every recursive walker (canonical JSON for the signature, the
schema validator) raise ``RecursionError`` and crash whoever called it.
:func:`check_shape` bounds nesting depth and node count with an explicit
stack right after parsing, so nothing deeper than :data:`MAX_DEPTH` ever
reaches a recursive function. Nothing legitimate comes close: the deepest
real envelope is ``{"args": {"..": [..]}}`` (depth 3-4).
"""

from __future__ import annotations

from typing import Any

from .errors import CommandRefused

MAX_DEPTH = 32
"""Deepest JSON nesting (objects + arrays, the envelope counting as 1) accepted."""

MAX_NODES = 100_000
"""Most JSON values (containers, keys' values, items) in one envelope."""


def check_shape(doc: Any, *, max_depth: int = MAX_DEPTH, max_nodes: int = MAX_NODES) -> None:
    """Raise CommandRefused(``too_deep`` / ``too_complex``) for an over-nested or huge document.

    Iterative (no recursion), stops at the first violation: cost is
    O(min(nodes, max_nodes)).
    """
    stack: list[tuple[Any, int]] = [(doc, 1)]
    nodes = 0
    while stack:
        value, depth = stack.pop()
        nodes += 1
        if nodes > max_nodes:
            raise CommandRefused(f"JSON has more than {max_nodes} values", code="too_complex")
        if isinstance(value, dict):
            children: Any = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        if depth > max_depth:
            raise CommandRefused(f"JSON nested deeper than {max_depth} levels", code="too_deep")
        stack.extend((child, depth + 1) for child in children)
