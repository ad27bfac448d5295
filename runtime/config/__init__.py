"""Firmware configuration: TOML validated once at load into frozen dataclasses.

Public surface: :func:`load_config`, :class:`ConfigError`, :class:`DeviceConfig`
and its sections, :class:`SecretRef`, :func:`render_effective`,
:func:`example_toml`, and :func:`setting`/:class:`FieldError` for section authors.
"""

from __future__ import annotations

from ._fields import FieldError, setting
from .example import example_toml
from .loader import ConfigError, LoadedConfig, effective_config, load_config, render_effective
from .model import DeviceConfig
from .secrets import SecretRef

__all__ = [
    "ConfigError",
    "DeviceConfig",
    "FieldError",
    "LoadedConfig",
    "SecretRef",
    "effective_config",
    "example_toml",
    "load_config",
    "render_effective",
    "setting",
]
