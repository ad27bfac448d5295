"""Config section of the GPIO driver and door control (owned by drivers/gpio, handlers/door)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ._fields import FieldError, setting


@dataclass(frozen=True)
class GpioSection:
    """Relay output and door inputs. The relay energised releases the lock."""

    driver: Literal["simulated", "gpiod"] = setting(
        "simulated",
        doc="'simulated' keeps line values in memory (tests drive the inputs); 'gpiod' uses the "
        "Linux GPIO character device through libgpiod v2 (install the 'gpio' extra).",
    )
    chip: Path = setting(Path("/dev/gpiochip0"), doc="gpiod driver: GPIO chip device path.")
    relay_line: int = setting(17, doc="Output line that drives the lock relay.", ge=0)
    relay_active_high: bool = setting(True, doc="True if driving the line high energises the relay.")
    safe_state: Literal["locked", "unlocked"] = setting(
        "locked",
        doc="Relay state on start, shutdown and crash: 'locked' (fail-secure) or 'unlocked' "
        "(fail-safe, e.g. an escape route).",
    )
    unlock_s: float = setting(3.0, doc="How long a grant keeps the lock released.", gt=0, le=60)
    door_sensor_line: int | None = setting(
        None, doc="Input line of the door contact (optional).", ge=0
    )
    door_open_high: bool = setting(True, doc="True if the door contact reads high when open.")
    exit_button_line: int | None = setting(
        None, doc="Input line of the request-to-exit button.", ge=0
    )
    exit_pressed_high: bool = setting(True, doc="True if the exit button reads high when pressed.")
    debounce_ms: int = setting(20, doc="gpiod driver: input debounce period.", ge=0, le=1000)
    relock_on_close: bool = setting(
        True, doc="Relock as soon as the door closes after an opening, not only at unlock_s."
    )
    held_open_s: float = setting(30.0, doc="Door open longer than this raises 'held_open'.", gt=0)
    tamper_line: int | None = setting(
        None, doc="Input line of the enclosure tamper switch (optional; raises 'enclosure_open').", ge=0
    )
    tamper_open_high: bool = setting(True, doc="True if the tamper switch reads high when opened.")

    def check(self) -> None:
        lines = [self.relay_line, self.door_sensor_line, self.exit_button_line]
        used = [x for x in lines if x is not None]
        if len(used) != len(set(used)):
            raise FieldError("relay_line", "relay, door sensor and exit button need distinct lines")
        if self.tamper_line is not None and self.tamper_line in used:
            raise FieldError("tamper_line", "the tamper switch needs its own line")
