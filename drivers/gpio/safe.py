"""Drive the relay line to its safe state from outside the device process.

Used by ``facegate gpio safe`` (the systemd unit's ``ExecStopPost=``): after
the service stopped for any reason, including ``kill -9`` and a crash, on a
kernel that keeps a released line at its last level (Raspberry Pi), the line
would otherwise stay where the dead process left it. This claims the relay
line alone, drives it de-energised and releases it again.

Only the ``[gpio]`` section of the config is read: secrets, storage and the
broker are not needed (and may be unavailable) on this path.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from ...runtime.clock import SystemClock
from ...runtime.config._convert import ConversionError, build_section
from ...runtime.config.gpio import GpioSection
from ...runtime.config.loader import ConfigError
from .gpiod_driver import GpiodGpio
from .simulated import SimulatedGpio

SAFE_LEVEL = False


def load_gpio_section(path: Path) -> GpioSection:
    """The validated ``[gpio]`` section of ``path``; ConfigError names file, key and reason."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(path, "", f"cannot read: {exc.strerror}") from None
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(path, "", f"not valid TOML: {exc}") from None
    section = raw.get("gpio", {})
    if not isinstance(section, dict):
        raise ConfigError(path, "gpio", "expected a table")
    try:
        return build_section(GpioSection, section, "gpio", path.parent.resolve())
    except ConversionError as exc:
        raise ConfigError(path, exc.key, exc.reason) from None


async def drive_safe(section: GpioSection) -> bool:
    """Claim the relay line at its safe level and release it. False without a relay.

    Raises GpioUnavailableError when the line cannot be claimed (for example the
    device still holds it: then the device itself keeps it safe on exit).
    """
    if section.relay == "none":
        return False
    outputs = {section.relay_line: SAFE_LEVEL}
    clock = SystemClock()
    if section.driver == "gpiod":
        driver: GpiodGpio | SimulatedGpio = GpiodGpio(
            chip=section.chip, outputs=outputs, inputs=[], clock=clock, consumer="facegate-safe"
        )
    else:
        driver = SimulatedGpio(
            outputs=outputs,
            inputs=[],
            clock=clock,
            chip_file=section.sim_chip,
            release=section.sim_release,
        )
    async with driver:
        driver.set_output(section.relay_line, SAFE_LEVEL)
    return True
