"""MQTT commands: signed ``cmd/<verb>`` messages, checked, run and replied to.

Public surface:

* :class:`CommandService` (Service ``commands``) and :func:`build_command_service`;
* :class:`Verifier`, :class:`NonceCache` (Ed25519 operators, window, replay cache);
* :mod:`.envelope` (``build``/``encode``/``signed_bytes``: what clients sign);
* :class:`VerbTable`, :class:`Tunables`, :class:`Tunable`, and the component
  protocols verbs bind to (:class:`Door`, :class:`PrivacyActions`,
  :class:`LicenceInstaller`, :class:`KeyRotator`);
* :data:`VERBS`, :func:`first_error` (the JSON Schemas in ``schemas/``);
* the error tree (:class:`CommandError` ...), each with a stable ``code``.
"""

from __future__ import annotations

from .auth import NonceCache, NonceStore, Verifier
from .errors import (
    CommandError,
    CommandRefused,
    CommandReplay,
    CommandUnauthorised,
    VerbFailed,
    VerbNotAvailable,
)
from .schema import VERBS, first_error
from .service import CommandService, Outcome
from .verbs import (
    Door,
    Invocation,
    KeyRotator,
    LicenceInstaller,
    PrivacyActions,
    Tunable,
    Tunables,
    VerbParts,
    VerbTable,
    device_verbs,
)
from .wiring import build_command_service

__all__ = [
    "VERBS",
    "CommandError",
    "CommandRefused",
    "CommandReplay",
    "CommandService",
    "CommandUnauthorised",
    "Door",
    "Invocation",
    "KeyRotator",
    "LicenceInstaller",
    "NonceCache",
    "NonceStore",
    "Outcome",
    "PrivacyActions",
    "Tunable",
    "Tunables",
    "VerbFailed",
    "VerbNotAvailable",
    "VerbParts",
    "VerbTable",
    "Verifier",
    "build_command_service",
    "device_verbs",
    "first_error",
]
