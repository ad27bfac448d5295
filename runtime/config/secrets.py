"""Secrets in config: read from a file, the environment or a systemd credential.

A secret is never written inline in a config file: the file names where the
secret lives. The value is resolved once at load and masked whenever config
is rendered or logged.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from ..logs import register_secret


@dataclass(frozen=True)
class SecretRef:
    """Where a secret comes from, and (after load) its value.

    Exactly one of ``file``, ``env`` or ``credential`` is set. ``credential``
    names a file in ``$CREDENTIALS_DIRECTORY`` (systemd ``LoadCredential=``).
    """

    file: Path | None = None
    env: str | None = None
    credential: str | None = None
    value: str = field(default="", repr=False, compare=False)

    def describe(self) -> str:
        """Where the secret comes from, for error messages (never the value)."""
        if self.file is not None:
            return f"file {self.file}"
        if self.env is not None:
            return f"environment variable {self.env}"
        return f"systemd credential {self.credential}"

    def reveal(self) -> str:
        """The secret itself. Call only where it is used, never to log it."""
        return self.value


def resolve_secret(raw: object, base_dir: Path) -> SecretRef:
    """Turn a TOML table ``{file=..}``, ``{env=..}`` or ``{credential=..}`` into a SecretRef.

    Raises ValueError with a reason that names the source but not the value.
    """
    if isinstance(raw, str):
        raise ValueError(  # noqa: TRY004 -- surfaced as a config error with its key path
            "secrets are never inline: use { file = \"...\" }, { env = \"...\" } "
            "or { credential = \"...\" }"
        )
    if not isinstance(raw, dict):
        raise ValueError("expected a table with one of file, env or credential")  # noqa: TRY004 -- reported as a config ValueError with its key path
    keys = set(raw)
    allowed = {"file", "env", "credential"}
    if unknown := keys - allowed:
        raise ValueError(f"unknown key(s) {sorted(unknown)}; allowed: file, env, credential")
    if len(keys) != 1:
        raise ValueError("give exactly one of file, env or credential")
    (kind,) = keys
    name = raw[kind]
    if not isinstance(name, str) or not name:
        raise ValueError(f"{kind} must be a non-empty string")
    if kind == "file":
        path = Path(name)
        if not path.is_absolute():
            path = base_dir / path
        try:
            value = path.read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            raise ValueError(f"cannot read secret file {path}: {exc.strerror}") from None
        ref = SecretRef(file=path, value=value)
    elif kind == "env":
        if name not in os.environ:
            raise ValueError(f"environment variable {name} is not set")
        ref = SecretRef(env=name, value=os.environ[name])
    else:
        cred_dir = os.environ.get("CREDENTIALS_DIRECTORY")
        if not cred_dir:
            raise ValueError("CREDENTIALS_DIRECTORY is not set (not started by systemd?)")
        path = Path(cred_dir) / name
        try:
            value = path.read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            raise ValueError(f"cannot read credential {name}: {exc.strerror}") from None
        ref = SecretRef(credential=name, value=value)
    register_secret(ref.value)
    return ref
