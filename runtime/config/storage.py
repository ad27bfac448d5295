"""Config section of the encrypted store (owned by storage/)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ._fields import FieldError, setting
from .secrets import SecretRef


@dataclass(frozen=True)
class StorageSection:
    """The SQLite file, its key-encryption key (KEK) and storage bounds."""

    enabled: bool = setting(
        True,
        doc="Open the encrypted store. Off only for a device without a gallery (door and MQTT "
        "only); recognition needs it.",
    )
    path: Path = setting(Path("facegate.db"), doc="SQLite database file (WAL beside it).")
    vault_path: Path | None = setting(
        None,
        doc="Key vault file holding the wrapped per-subject keys; empty means "
        "'<db stem>.keys.db' beside the database. Never back it up with the database: "
        "erasing a subject deletes its key here, which is what makes old copies unreadable.",
    )
    kek_source: Literal["file", "credential", "env", "passphrase"] = setting(
        "file",
        doc="Where the KEK comes from: a 0600 key file, a systemd credential, an environment "
        "variable (tests), or a passphrase stretched with scrypt.",
    )
    kek_file: Path = setting(
        Path("facegate.kek"),
        doc="KEK file for kek_source = 'file' (base64; refused unless mode 0600). "
        "Create it with 'facegate keys init'.",
    )
    kek_credential: str = setting(
        "facegate-kek", doc="Credential name in $CREDENTIALS_DIRECTORY for kek_source = 'credential'."
    )
    kek_env: str = setting("FACEGATE_KEK", doc="Environment variable for kek_source = 'env'.")
    passphrase: SecretRef | None = setting(
        None,
        doc="Passphrase for kek_source = 'passphrase': { file = ... }, { env = ... } or "
        "{ credential = ... }.",
        secret=True,
    )
    busy_timeout_ms: int = setting(
        5000, doc="How long a write waits for another process's lock.", ge=100, le=120_000
    )
    integrity_check: Literal["quick", "full", "off"] = setting(
        "quick", doc="Start-up check: PRAGMA quick_check, integrity_check, or none."
    )
    outbox_max_pending: int = setting(
        100_000,
        doc="Bound of undelivered outbox events. When full, oldest telemetry is dropped; "
        "access, security and privacy events are refused loudly, never dropped.",
        ge=100,
    )
    max_templates_per_subject: int = setting(20, doc="Most templates one subject may hold.", ge=1, le=1000)

    def check(self) -> None:
        if self.kek_source == "passphrase" and self.passphrase is None:
            raise FieldError("passphrase", "kek_source = 'passphrase' needs a passphrase secret")
        if self.kek_source == "credential" and not self.kek_credential:
            raise FieldError("kek_credential", "must name the credential")
        if self.kek_source == "env" and not self.kek_env:
            raise FieldError("kek_env", "must name the variable")
