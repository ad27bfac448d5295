"""facegate.runtime: the event-driven core of a facegate device.

Public surface: the clock, the typed event bus, the supervisor and the
``Device`` lifecycle. Everything else in this package is internal.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
