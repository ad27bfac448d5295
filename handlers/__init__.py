"""facegate.handlers: event handlers (recognition pipeline, door control, commands)."""
