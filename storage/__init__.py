"""facegate.storage: encrypted SQLite store (gallery, outbox, audit log).

Public surface:

* :class:`Store` (open with ``async with``), built from config with
  :meth:`Store.from_config`; it exposes ``gallery`` (:class:`Gallery`),
  ``outbox`` (:class:`Outbox`), ``kv`` (:class:`KvState`), ``keys``,
  ``transaction()`` and ``audit(tx, ...)``.
* :class:`TemplateSink`: what the recognition matcher implements.
* :class:`KekSource`/:class:`KekSourceKind`, :func:`rotate_kek`, :func:`init_kek`.
* :class:`EventClass`, :class:`OutboxRecord`, :class:`AuditAction`, :func:`verify_chain`.
* Errors in :mod:`facegate.storage.errors`; :func:`uuid7_str`.
"""

from .audit import AuditAction, AuditRecord, AuditVerification, verify_chain
from .db import Database, Tx
from .enrolment import EnrolResult
from .gallery import ErasureReceipt, Gallery, SubjectRecord
from .kek import KekSource, KekSourceKind
from .loader import LoadReport, TemplateSink
from .outbox import EventClass, Outbox, OutboxRecord
from .rotate import RotationReport, init_kek, rotate_kek
from .store import KvState, Store, kek_source_from_config
from .uuid7 import uuid7, uuid7_str

__all__ = [
    "AuditAction",
    "AuditRecord",
    "AuditVerification",
    "Database",
    "EnrolResult",
    "ErasureReceipt",
    "EventClass",
    "Gallery",
    "KekSource",
    "KekSourceKind",
    "KvState",
    "LoadReport",
    "Outbox",
    "OutboxRecord",
    "RotationReport",
    "Store",
    "SubjectRecord",
    "TemplateSink",
    "Tx",
    "init_kek",
    "kek_source_from_config",
    "rotate_kek",
    "uuid7",
    "uuid7_str",
    "verify_chain",
]
