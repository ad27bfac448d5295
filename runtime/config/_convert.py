"""Generic conversion of parsed TOML into frozen config dataclasses.

Rules: unknown keys are rejected; missing keys take the field default or are
an error; values are converted by the field's type annotation and checked
against its bounds; a section's ``check()`` method runs cross-field rules.
Every error carries the dotted key path.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin, get_type_hints

from ._fields import FieldError
from .secrets import SecretRef, resolve_secret

T = TypeVar("T")


class ConversionError(ValueError):
    """A value at ``key`` is invalid; the loader adds the file name."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"{key}: {reason}")
        self.key = key
        self.reason = reason


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in get_args(tp))
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return " | ".join(repr(m.value) for m in tp)
    return getattr(tp, "__name__", str(tp))


def convert_value(tp: Any, raw: Any, key: str, base_dir: Path) -> Any:  # noqa: PLR0915 -- one case per supported type
    """Convert one raw TOML value to ``tp``; raise ConversionError naming ``key``."""
    origin = get_origin(tp)
    if origin in (types.UnionType, typing.Union):
        options = [a for a in get_args(tp) if a is not type(None)]
        if raw is None:
            return None
        if len(options) == 1:  # `X | None`: keep the inner error's own key path
            return convert_value(options[0], raw, key, base_dir)
        errors = []
        for opt in options:
            try:
                return convert_value(opt, raw, key, base_dir)
            except ConversionError as exc:
                errors.append(exc.reason)
        raise ConversionError(key, "; ".join(errors))
    if origin is Literal:
        if raw not in get_args(tp):
            raise ConversionError(key, f"must be one of {_type_name(tp)}, got {raw!r}")
        return raw
    if origin is tuple:
        args = get_args(tp)
        if not isinstance(raw, list):
            raise ConversionError(key, f"expected a list, got {type(raw).__name__}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(
                convert_value(args[0], v, f"{key}[{i}]", base_dir) for i, v in enumerate(raw)
            )
        if len(raw) != len(args):
            raise ConversionError(key, f"expected a list of {len(args)} values, got {len(raw)}")
        return tuple(
            convert_value(a, v, f"{key}[{i}]", base_dir)
            for i, (a, v) in enumerate(zip(args, raw, strict=True))
        )
    if origin is dict:
        _, v_tp = get_args(tp)
        if not isinstance(raw, dict):
            raise ConversionError(key, f"expected a table, got {type(raw).__name__}")
        return {str(k): convert_value(v_tp, v, _join(key, str(k)), base_dir) for k, v in raw.items()}
    if tp is SecretRef:
        try:
            return resolve_secret(raw, base_dir)
        except ValueError as exc:
            raise ConversionError(key, str(exc)) from None
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if not isinstance(raw, dict):
            raise ConversionError(key, f"expected a table, got {type(raw).__name__}")
        return build_section(tp, raw, key, base_dir)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        try:
            return tp(raw)
        except ValueError:
            raise ConversionError(key, f"must be one of {_type_name(tp)}, got {raw!r}") from None
    if tp is bool:
        if not isinstance(raw, bool):
            raise ConversionError(key, f"expected true or false, got {raw!r}")
        return raw
    if tp is int:
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise ConversionError(key, f"expected an integer, got {raw!r}")
        return raw
    if tp is float:
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            raise ConversionError(key, f"expected a number, got {raw!r}")
        # TOML allows nan and inf; nan passes every bound check (all comparisons are
        # False), so a timing such as gpio.unlock_s = nan would load silently.
        if not math.isfinite(raw):
            raise ConversionError(key, f"expected a finite number, got {raw!r}")
        return float(raw)
    if tp is str:
        if not isinstance(raw, str):
            raise ConversionError(key, f"expected a string, got {raw!r}")
        return raw
    if tp is Path:
        if not isinstance(raw, str) or not raw:
            raise ConversionError(key, f"expected a path string, got {raw!r}")
        path = Path(raw).expanduser()
        return path if path.is_absolute() else (base_dir / path)
    raise ConversionError(key, f"unsupported config type {tp!r}")  # pragma: no cover


def _check_bounds(f: dataclasses.Field[Any], value: Any, key: str) -> None:
    measure = len(value) if isinstance(value, tuple) else value
    if not isinstance(measure, int | float) or isinstance(measure, bool):
        return
    ge, le, gt = f.metadata.get("ge"), f.metadata.get("le"), f.metadata.get("gt")
    if ge is not None and measure < ge:
        raise ConversionError(key, f"must be >= {ge}, got {value!r}")
    if le is not None and measure > le:
        raise ConversionError(key, f"must be <= {le}, got {value!r}")
    if gt is not None and measure <= gt:
        raise ConversionError(key, f"must be > {gt}, got {value!r}")


def build_section(cls: type[T], raw: dict[str, Any], prefix: str, base_dir: Path) -> T:
    """Build dataclass ``cls`` from ``raw``, rejecting unknown keys."""
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]  # cls is a dataclass
    removed: dict[str, str] = getattr(cls, "removed_keys", {})
    for k in raw:
        if k in removed:
            raise ConversionError(_join(prefix, k), f"no longer supported: {removed[k]}")
        if k not in fields:
            near = ", ".join(sorted(fields))
            raise ConversionError(_join(prefix, k), f"unknown key (allowed here: {near})")
    values: dict[str, Any] = {}
    for name, f in fields.items():
        key = _join(prefix, name)
        if name in raw:
            value = convert_value(hints[name], raw[name], key, base_dir)
            _check_bounds(f, value, key)
            values[name] = value
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            tp = hints[name]
            if dataclasses.is_dataclass(tp) and isinstance(tp, type):
                values[name] = build_section(tp, {}, key, base_dir)
            else:
                raise ConversionError(key, "is required")
    try:
        obj = cls(**values)
        check = getattr(obj, "check", None)
        if callable(check):
            check()
    except FieldError as exc:
        raise ConversionError(_join(prefix, exc.key), exc.reason) from None
    return obj
