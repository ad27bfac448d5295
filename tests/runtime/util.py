"""Helpers shared by runtime tests: config files and captured logs."""

from __future__ import annotations

import io
import json
from contextlib import AsyncExitStack
from pathlib import Path

import structlog
from facegate.runtime.app.device import Builder
from facegate.runtime.app.root import Context, Parts, door_services, open_gpio
from facegate.runtime.config import LoadedConfig, load_config
from facegate.runtime.logs import configure_logging
from facegate.runtime.service import SafeOutput, Service

# Core tests run a device without a gallery: no store, no recognition models.
NO_GALLERY = "\n[storage]\nenabled = false\n\n[recognition]\nenabled = false\n"
MINIMAL = '[device]\nid = "gate-1"\n' + NO_GALLERY


def write_config(tmp_path: Path, text: str, name: str = "device.toml") -> Path:
    """Write ``text`` to ``tmp_path/name`` and return the path."""
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def load_text(tmp_path: Path, text: str) -> LoadedConfig:
    """Write and load a config."""
    return load_config(write_config(tmp_path, text))


class CapturedLogs:
    """Real structlog output (JSON lines) captured into a StringIO."""

    def __init__(self, level: str = "info") -> None:
        self.stream = io.StringIO()
        configure_logging(device_id="gate-1", level=level, fmt="json", stream=self.stream)

    @property
    def text(self) -> str:
        return self.stream.getvalue()

    def lines(self) -> list[dict[str, object]]:
        return [json.loads(line) for line in self.text.splitlines() if line.strip()]

    def events(self, name: str) -> list[dict[str, object]]:
        return [line for line in self.lines() if line.get("event") == name]

    @staticmethod
    def reset() -> None:
        structlog.reset_defaults()
        structlog.contextvars.clear_contextvars()


def gpio_only(*extra: Service, outputs: tuple[SafeOutput, ...] = ()) -> Builder:
    """A device builder with the root's GPIO and door parts only (plus ``extra`` services/outputs)."""

    async def builder(ctx: Context, stack: AsyncExitStack) -> Parts:
        gpio = await open_gpio(ctx, stack)
        door, services = door_services(ctx, gpio)
        return Parts(gpio=gpio, door=door, services=(*services, *extra), safe_outputs=(door, *outputs))

    return builder
