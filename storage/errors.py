"""The storage error tree.

Every error raised on purpose by :mod:`facegate.storage` derives from
:class:`StorageError`. Messages never contain embeddings, names or key bytes.
"""

from __future__ import annotations

from ..runtime.errors import CodedError, FacegateError


class StorageError(FacegateError):
    """Base of every storage failure."""


class DatabaseError(StorageError):
    """The database file cannot be opened or used."""


class SchemaTooNewError(DatabaseError):
    """The file was written by a newer facegate; it is refused, never downgraded."""


class IntegrityCheckError(DatabaseError):
    """``PRAGMA quick_check``/``integrity_check`` failed; start-up is refused without repair."""


class KeyMaterialError(StorageError):
    """Base of key-encryption-key (KEK) and data-key problems."""


class KekSourceError(KeyMaterialError):
    """The configured KEK source is missing, unreadable or malformed. Names the source."""


class KeyFilePermissionError(KekSourceError):
    """A KEK file is readable or writable by group/others (must be 0600 or stricter)."""


class WrongKekError(KeyMaterialError):
    """The KEK does not match the one this database was initialised with. Data is untouched."""


class KeyUnavailableError(KeyMaterialError):
    """A subject's data key is wrapped under a KEK this process does not hold (mid-rotation)."""


class RotationError(KeyMaterialError, CodedError):
    """A key rotation cannot start or continue (missing next key, mismatched ids).

    ``code`` is a stable machine-readable reason (command replies carry it).
    """

    code = "rotation_failed"


class TamperError(StorageError):
    """A ciphertext failed authentication (modified bytes, or AAD mismatch from moved rows).

    ``subject_id``/``template_id`` say which record; the record is quarantined.
    """

    def __init__(self, message: str, *, subject_id: str, template_id: str | None = None) -> None:
        super().__init__(message)
        self.subject_id = subject_id
        self.template_id = template_id


class SubjectNotFoundError(StorageError):
    """No subject with that id is stored."""


class InvalidInputError(StorageError):
    """A caller passed a malformed id, embedding array or payload; nothing was written."""


class OutboxFullError(StorageError):
    """The outbox is at its bound and the event may not be dropped (access/security/privacy)."""


class AuditChainError(StorageError):
    """The audit hash chain is broken; ``seq`` names the first bad row."""

    def __init__(self, message: str, *, seq: int) -> None:
        super().__init__(message)
        self.seq = seq


class DeviceSecretError(KeyMaterialError):
    """A device secret (export signing key, snapshot key) cannot be created or unwrapped."""


class SealedValueError(StorageError):
    """A sealed key-value entry failed authentication or is malformed (edited ciphertext?)."""


class ImageEnrolsAnotherSubjectError(InvalidInputError, CodedError):
    """An enrolment image already enrols another subject: one photo cannot enrol two people.

    The message names neither subject nor digest; the caller names the file.
    """

    code = "image_enrols_another_subject"
    bad_input = True
