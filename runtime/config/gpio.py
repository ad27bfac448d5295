"""Config section of the GPIO driver and door control (owned by drivers/gpio, handlers/door)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ._fields import FieldError, setting


@dataclass(frozen=True)
class GpioSection:
    """Relay output and door inputs."""

    driver: Literal["simulated"] = setting(
        "simulated", doc="'simulated' keeps line values in memory (tests drive the inputs)."
    )
    relay_line: int = setting(17, doc="Output line that drives the lock relay.", ge=0)
    relay_active_high: bool = setting(True, doc="True if driving the line high energises the relay.")
    safe_state: Literal["locked", "unlocked"] = setting(
        "locked",
        doc="Relay state on start, shutdown and crash: 'locked' (fail-secure) or 'unlocked' "
        "(fail-safe, e.g. an escape route).",
    )
    unlock_s: float = setting(3.0, doc="How long a grant keeps the lock released.", gt=0, le=60)
    door_sensor_line: int | None = setting(None, doc="Input line of the door contact (optional).")
    exit_button_line: int | None = setting(None, doc="Input line of the request-to-exit button.")
    held_open_s: float = setting(30.0, doc="Door open longer than this raises 'held_open'.", gt=0)

    def check(self) -> None:
        lines = [self.relay_line, self.door_sensor_line, self.exit_button_line]
        used = [x for x in lines if x is not None]
        if len(used) != len(set(used)):
            raise FieldError("relay_line", "relay, door sensor and exit button need distinct lines")
