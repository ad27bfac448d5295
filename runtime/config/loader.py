"""Loading, rendering and documenting firmware config files."""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
import re
import tomllib
from pathlib import Path
from typing import Any

from ..errors import FacegateError
from ._convert import ConversionError, build_section
from .model import DeviceConfig
from .secrets import SecretRef

# user:password@ inside any URL-like value (camera RTSP sources, for example).
_URL_CREDENTIALS = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]+@")


class ConfigError(FacegateError):
    """A config file is unreadable or invalid. ``str()`` names file, key path and reason."""

    def __init__(self, file: Path | str, key: str, reason: str) -> None:
        self.file = str(file)
        self.key = key
        self.reason = reason
        where = f"{self.file}: {key}" if key else self.file
        super().__init__(f"{where}: {reason}")


@dataclasses.dataclass(frozen=True)
class LoadedConfig:
    """A validated config together with where it came from and its digest."""

    config: DeviceConfig
    path: Path
    digest: str


def load_config(path: Path | str) -> LoadedConfig:
    """Read and validate ``path``. Raises ConfigError; never returns a partial config."""
    path = Path(path)
    try:
        raw_bytes = path.read_bytes()
    except OSError as exc:
        raise ConfigError(path, "", f"cannot read: {exc.strerror}") from None
    try:
        raw = tomllib.loads(raw_bytes.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(path, "", "not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, "", f"TOML syntax error: {exc}") from None
    try:
        cfg = build_section(DeviceConfig, raw, "", path.parent.resolve())
    except ConversionError as exc:
        raise ConfigError(path, exc.key, exc.reason) from None
    digest = hashlib.sha256(raw_bytes).hexdigest()[:16]
    return LoadedConfig(config=cfg, path=path, digest=digest)


def _plain(value: Any, *, secret: bool = False) -> Any:
    if secret and value is not None:
        return "***" if not isinstance(value, SecretRef) else f"*** ({value.describe()})"
    if isinstance(value, SecretRef):
        return f"*** ({value.describe()})"
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: _plain(getattr(value, f.name), secret=bool(f.metadata.get("secret")))
            for f in dataclasses.fields(value)
        }
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, str):
        return _URL_CREDENTIALS.sub(r"\g<scheme>***@", value)
    return value


def effective_config(cfg: DeviceConfig) -> dict[str, Any]:
    """The effective config as plain data, with every secret masked."""
    result = _plain(cfg)
    assert isinstance(result, dict)
    return result


def render_effective(cfg: DeviceConfig) -> str:
    """Human-readable JSON of the effective config with secrets masked."""
    return json.dumps(effective_config(cfg), indent=2, sort_keys=False)
