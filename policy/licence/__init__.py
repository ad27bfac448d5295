"""facegate.policy.licence: the device-bound licence (docs/licence.md).

* :mod:`.document`: canonical JSON licences signed with Ed25519 (:func:`issue_test_licence`
  issues one with a given vendor key for tests and simulated devices);
* :mod:`.fingerprint`: the fingerprint per deployment mode (kiosk hash / app install id);
* :mod:`.state`: :class:`LicenceState` and the pure :func:`evaluate`;
* :mod:`.manager`: :class:`LicenceManager` (component ``licence``: install, enforcement);
* :mod:`.report`: the retained ``licence`` topic; :mod:`.seats` / :mod:`.seat_client`: the
  fleet seat service and its device client.
"""

from .document import canonical, issue_test_licence, make_body, parse, sign, verify
from .errors import FingerprintError, LicenceError, LicenceFormatError, LicenceRefused, LicenceRequired
from .fingerprint import Fingerprint, install_fingerprint, kiosk_fingerprint
from .manager import LicenceManager, status_payload
from .state import LicenceState, LicenceStatus, evaluate

__all__ = [
    "Fingerprint",
    "FingerprintError",
    "LicenceError",
    "LicenceFormatError",
    "LicenceManager",
    "LicenceRefused",
    "LicenceRequired",
    "LicenceState",
    "LicenceStatus",
    "canonical",
    "evaluate",
    "install_fingerprint",
    "issue_test_licence",
    "kiosk_fingerprint",
    "make_body",
    "parse",
    "sign",
    "status_payload",
    "verify",
]
