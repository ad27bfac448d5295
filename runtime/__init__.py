"""facegate.runtime: the event-driven core of a facegate device.

Public surface: the clock, the typed event bus, the supervisor and the
``Device`` lifecycle. Everything else in this package is internal.
"""

from __future__ import annotations

import os as _os
import sys as _sys


def disable_dependency_telemetry() -> None:
    """Turn off onnxruntime's usage telemetry before onnxruntime is imported.

    onnxruntime's official builds create a persistent device id under ~/.cache, read the
    DMI vendor/product names and queue usage telemetry on import unless
    ``ORT_DISABLE_TELEMETRY=1`` is set BEFORE the import (issue 10.6, policy/RULES.md R28).
    Runs when ``facegate.runtime`` is imported; ``facegate.drivers`` and
    ``facegate.handlers`` (the only packages importing onnxruntime) import this package from
    their ``__init__``, which Python runs before any of their modules.
    """
    _os.environ["ORT_DISABLE_TELEMETRY"] = "1"
    if "onnxruntime" in _sys.modules:  # imported before facegate: too late for this process
        import warnings  # noqa: PLC0415  # only on this rare path

        warnings.warn(
            "onnxruntime was imported before facegate: set ORT_DISABLE_TELEMETRY=1 in the environment",
            RuntimeWarning,
            stacklevel=3,
        )


disable_dependency_telemetry()

__version__ = "0.1.0"

__all__ = ["__version__", "disable_dependency_telemetry"]
