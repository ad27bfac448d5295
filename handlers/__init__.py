"""facegate.handlers: event handlers (recognition pipeline, door control, commands)."""

# onnxruntime's official builds create a persistent device id under ~/.cache, read the
# DMI vendor/product names and queue usage telemetry on import, unless this is set
# BEFORE the import (issue 10.6, policy/RULES.md). facegate.drivers and facegate.handlers
# (the only packages importing onnxruntime) and facegate.runtime (the CLI) set it in their
# __init__, which Python runs before any of their modules.
import os as _os
import sys as _sys

_os.environ["ORT_DISABLE_TELEMETRY"] = "1"
if "onnxruntime" in _sys.modules:  # imported before facegate: too late for this process
    import warnings as _warnings

    _warnings.warn(
        "onnxruntime was imported before facegate: set ORT_DISABLE_TELEMETRY=1 in the environment",
        RuntimeWarning,
        stacklevel=2,
    )

