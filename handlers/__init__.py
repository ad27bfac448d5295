"""facegate.handlers: event handlers (recognition pipeline, door control, commands)."""

# Imported first: facegate.runtime turns dependency telemetry off before any module of this
# package can import onnxruntime (runtime.disable_dependency_telemetry, policy/RULES.md R28).
from .. import runtime as _runtime  # noqa: F401  # imported for that side effect
