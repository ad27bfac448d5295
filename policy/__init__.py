"""facegate.policy: privacy rules as code (consent, retention, data-subject rights).

Public surface (what the CLI, the MQTT command layer and recognition call):

* :class:`Policy`: ``enrol_subject``/``enrol_many`` (the only enrolment entry
  point), ``require_enrolment_consent``, ``withdraw_consent``,
  ``withdraw_subject``, ``erase_subject``, ``rectify``, ``record_match``;
  ``policy.consents`` is the :class:`ConsentRegistry` (grant, activate,
  transition, record_age, check_enrolment).
* :func:`export_subject` / :func:`verify_export` / :func:`decrypt_templates`
  (rights), :func:`device_public_key`.
* Services: :class:`RetentionSweeper` (and :func:`sweep`), :class:`GalleryWatcher`
  (other processes' erasures/enrolments reach the live matcher).
* :func:`destroy` (device teardown).
* Consent model types and the error tree (:mod:`facegate.policy.errors`).
"""

from .consent import ACCESS_CONTROL, AgeRecord, ConsentRegistry
from .consent_model import AgeBand, ConsentKind, ConsentMethod, ConsentRecord, ConsentState, Guardian
from .core import EnrolItem, ErasureOutcome, Policy
from .device_keys import SigningKey, device_public_key
from .images import enrol_images
from .retention import RetentionSweeper, SweepReport, sweep
from .rights import decrypt_templates, export_subject, verify_export
from .teardown import TeardownReport, destroy
from .watch import GalleryWatcher

__all__ = [
    "ACCESS_CONTROL",
    "AgeBand",
    "AgeRecord",
    "ConsentKind",
    "ConsentMethod",
    "ConsentRecord",
    "ConsentRegistry",
    "ConsentState",
    "EnrolItem",
    "ErasureOutcome",
    "GalleryWatcher",
    "Guardian",
    "Policy",
    "RetentionSweeper",
    "SigningKey",
    "SweepReport",
    "TeardownReport",
    "decrypt_templates",
    "destroy",
    "device_public_key",
    "enrol_images",
    "export_subject",
    "sweep",
    "verify_export",
]
