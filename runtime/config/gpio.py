"""Config section of the GPIO driver and door control (owned by drivers/gpio, handlers/door)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

from ._fields import FieldError, setting

_LOCK_TYPE_HINT = (
    "replaced by lock_type = 'fail_safe' (energise to lock: maglock) or 'fail_secure' "
    "(energise to unlock: strike); the safe state and the relay polarity follow from it"
)


@dataclass(frozen=True)
class GpioSection:
    """Relay output and door inputs. The safe state is always the relay de-energised."""

    removed_keys: ClassVar[dict[str, str]] = {
        "relay_active_high": _LOCK_TYPE_HINT,
        "safe_state": _LOCK_TYPE_HINT,
    }
    """Keys of older config files, rejected with the reason and the replacement."""

    driver: Literal["simulated", "gpiod"] = setting(
        "simulated",
        doc="'simulated' keeps line values in memory (tests drive the inputs); 'gpiod' uses the "
        "Linux GPIO character device through libgpiod v2 (install the 'gpio' extra).",
    )
    chip: Path = setting(Path("/dev/gpiochip0"), doc="gpiod driver: GPIO chip device path.")
    relay: Literal["gpio", "none"] = setting(
        "gpio",
        doc="'gpio' drives the lock relay on relay_line; 'none' is gate-controller mode: an "
        "external access panel owns the lock and acts on event/access, facegate drives no relay "
        "and publishes no unlocked/locked (door contact and exit button are still read).",
    )
    relay_line: int = setting(17, doc="Output line that drives the lock relay.", ge=0)
    lock_type: Literal["fail_safe", "fail_secure"] = setting(
        "fail_secure",
        doc="'fail_secure': energise to unlock (electric strike, turnstile); 'fail_safe': energise "
        "to lock (maglock). The line is high when the relay is energised; the safe state (start, "
        "shutdown, crash, `facegate gpio safe`) is always de-energised: locked for fail_secure, "
        "unlocked for fail_safe.",
    )
    unlock_s: float = setting(
        3.0,
        doc="Open time: how long a grant keeps the lock released. The GPIO driver's own timer "
        "thread ends the pulse, even if the event loop stalls.",
        ge=1,
        le=255,
    )
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
    fire_line: int | None = setting(
        None,
        doc="Input line of the fire-alarm contact (optional). While active the GPIO driver "
        "itself holds the lock released (no event loop, recognition, MQTT or storage involved) "
        "and keeps it released until a reset (see fire_reset).",
        ge=0,
    )
    fire_contact: Literal["no", "nc"] = setting(
        "no",
        doc="Fire contact type: 'no' (normally open: the line reads high in alarm) or 'nc' "
        "(normally closed: the line reads low in alarm, so a cut wire also releases; "
        "recommended for real panels).",
    )
    fire_reset: Literal["command", "input"] = setting(
        "command",
        doc="How a fire release ends once the fire input has cleared: 'command' (a signed "
        "'release' command) or 'input' (the local reset input, fire_reset_line, going high).",
    )
    fire_reset_line: int | None = setting(
        None, doc="Input line of the local fire reset key switch (fire_reset = 'input').", ge=0
    )
    input_min_pulse_ms: int = setting(
        50,
        doc="Inputs (door contact, exit button, fire, reset) must hold a new level this long to "
        "count; shorter pulses are ignored. At most 400: inputs of 400 ms or more are always "
        "processed (IEC 60839-11-1).",
        ge=0,
        le=400,
    )
    sim_chip: Path | None = setting(
        None,
        doc="simulated driver: a file standing in for the GPIO chip (line levels and the owning "
        "process), so that `facegate gpio safe` and tests see the lines across processes; "
        "absent keeps the lines in memory.",
    )
    sim_release: Literal["revert", "keep"] = setting(
        "revert",
        doc="simulated driver: what the modelled kernel does with an output line when the "
        "process releases it or dies: 'revert' to the line's default (low), or 'keep' its last "
        "level (Raspberry Pi kernels).",
    )
    tamper_line: int | None = setting(
        None, doc="Input line of the enclosure tamper switch (optional; raises 'enclosure_open').", ge=0
    )
    tamper_open_high: bool = setting(True, doc="True if the tamper switch reads high when opened.")

    def check(self) -> None:
        lines = [
            self.relay_line if self.relay == "gpio" else None,
            self.door_sensor_line,
            self.exit_button_line,
            self.fire_line,
            self.fire_reset_line,
        ]
        used = [x for x in lines if x is not None]
        if len(used) != len(set(used)):
            raise FieldError(
                "relay_line", "relay, door sensor, exit button and fire lines need distinct lines"
            )
        if self.fire_reset == "input" and self.fire_line is not None and self.fire_reset_line is None:
            raise FieldError("fire_reset_line", "fire_reset = 'input' needs a fire_reset_line")
        if self.tamper_line is not None and self.tamper_line in used:
            raise FieldError("tamper_line", "the tamper switch needs its own line")
