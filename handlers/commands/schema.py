"""The JSON Schemas in ``schemas/`` (one per verb's args, the envelope, the reply and every payload)."""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

SCHEMA_DIR = Path(__file__).with_name("schemas")

VERBS = (
    "enroll",
    "erase",
    "export",
    "withdraw",
    "rectify",
    "open",
    "lockdown",
    "release",
    "set",
    "licence/install",
    "keys/rotate",
    "ping",
    "restrict",
    "unrestrict",
    "hold",
    "hold/release",
    "destroy",
)
"""Every command verb (the topic suffix after ``cmd/``)."""


def schema_name(verb: str) -> str:
    """File stem of a verb's argument schema: ``licence/install`` -> ``cmd_licence_install``."""
    return "cmd_" + verb.replace("/", "_")


@functools.cache
def validator(name: str) -> Draft202012Validator:
    """The validator of ``schemas/<name>.json`` (loaded once)."""
    schema = json.loads((SCHEMA_DIR / f"{name}.json").read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def first_error(name: str, instance: Any) -> str | None:
    """A short message for the first schema violation, or None when ``instance`` is valid.

    The message names the JSON path and the rule, never the offending value
    (which may be an image or personal data).
    """
    errors = sorted(validator(name).iter_errors(instance), key=lambda e: list(e.absolute_path))
    if not errors:
        return None
    err = errors[0]
    path = "/".join(str(p) for p in err.absolute_path) or "(root)"
    return f"{path}: violates '{err.validator}'"


def all_schemas() -> Mapping[str, Draft202012Validator]:
    """Every schema in the folder, by file stem."""
    return {p.stem: validator(p.stem) for p in sorted(SCHEMA_DIR.glob("*.json"))}
