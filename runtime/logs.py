"""Structured logging with a privacy-enforcing redaction processor.

Every line carries the device id. Before rendering, :func:`redact` masks any
value whose key names personal or secret data (embeddings, images, names,
passwords, keys), any array or bytes value, long numeric sequences, and any
occurrence of a secret registered with :func:`register_secret`.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any, Literal, TextIO

import structlog

# Keys whose values are personal or secret data. Matched on the key's words,
# so "display_name", "embedding_vec" and "mqtt_password" are all caught.
_SENSITIVE_WORDS = frozenset(
    {
        "embedding", "embeddings", "template", "templates", "vector", "feature", "features",
        "image", "images", "frame", "frames", "jpeg", "png", "pixels", "photo", "face_crop",
        "snapshot", "name", "names", "display", "fullname", "birth", "dob",
        "password", "passphrase", "secret", "token", "kek", "dek", "private", "credential",
        "ciphertext", "plaintext", "signature_key",
    }
)
# Keys that contain a sensitive word but carry none of its data.
_ALLOWED_KEYS = frozenset(
    {
        "event", "logger", "level", "timestamp", "device_id", "frames_dropped", "frame_count",
        "frames", "template_count", "templates", "model_name", "task_name", "image_count",
        "images_skipped", "key_source", "name_count", "subscriber", "event_type", "component",
    }
)
_MASK = "[redacted]"
_MAX_NUMERIC_SEQUENCE = 16
_SECRETS: set[str] = set()
_WORD_SPLIT = re.compile(r"[^a-z0-9]+")


def register_secret(value: str) -> None:
    """Mask every later occurrence of ``value`` (length >= 4) in log output."""
    if len(value) >= 4:
        _SECRETS.add(value)


def _sensitive_key(key: str) -> bool:
    k = key.lower()
    if k in _ALLOWED_KEYS:
        return False
    return any(word in _SENSITIVE_WORDS for word in _WORD_SPLIT.split(k) if word)


def _mask_value(value: Any) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        return f"[redacted {len(value)} bytes]"
    type_name = type(value).__name__
    if type_name in {"ndarray", "matrix"}:
        return "[redacted array]"
    if isinstance(value, list | tuple):
        if len(value) > _MAX_NUMERIC_SEQUENCE and all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in value
        ):
            return f"[redacted {len(value)} numbers]"
        return type(value)(_mask_value(v) for v in value)
    if isinstance(value, Mapping):
        return {k: (_MASK if _sensitive_key(str(k)) else _mask_value(v)) for k, v in value.items()}
    if isinstance(value, str) and _SECRETS:
        for secret in _SECRETS:
            if secret in value:
                value = value.replace(secret, _MASK)
    return value


def redact(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: mask personal and secret data before rendering."""
    for key in list(event_dict):
        if _sensitive_key(key):
            event_dict[key] = _MASK
        else:
            event_dict[key] = _mask_value(event_dict[key])
    return event_dict


def _scrub_rendered(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    # Exception text is rendered by format_exc_info after redact(); scrub it again.
    exc = event_dict.get("exception")
    if isinstance(exc, str):
        event_dict["exception"] = _mask_value(exc)
    return event_dict


def configure_logging(
    *,
    device_id: str,
    level: Literal["debug", "info", "warning", "error"] = "info",
    fmt: Literal["auto", "json", "console"] = "auto",
    stream: TextIO | None = None,
) -> None:
    """Configure structlog (and route stdlib logging through it) for this process."""
    out = stream if stream is not None else sys.stderr
    use_console = fmt == "console" or (fmt == "auto" and out.isatty())
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=out.isatty())
        if use_console
        else structlog.processors.JSONRenderer(sort_keys=False)
    )
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact,
        structlog.processors.format_exc_info,
        _scrub_rendered,
    ]
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )
    structlog.contextvars.bind_contextvars(device_id=device_id)
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
            foreign_pre_chain=[
                *shared[:3],
                structlog.stdlib.add_logger_name,
                lambda _l, _m, ed: {**ed, "device_id": device_id},
                redact,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)  # third-party libraries (amqtt, paho) are noisy below this
