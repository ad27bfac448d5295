"""What each verb does, bound to the device's parts.

:class:`VerbTable` maps a verb to an async handler ``(Invocation) -> result dict``.
:func:`device_verbs` binds the verbs to the parts the composition root passes in
(typed keyword arguments; None means this device was built without that part):

* ``ping``: always;
* ``open`` / ``lockdown`` / ``release``: the door controller (``open(cause)``,
  ``lockdown(cause)``, ``release(cause)``); the cause is ``command:<nonce>``,
  never the operator's name;
* ``set``: the :class:`Tunables` registry (settings components chose to expose);
* ``enroll`` / ``erase`` / ``export`` / ``withdraw`` / ``rectify``: the
  :class:`PrivacyActions` of the policy layer (absent when storage is off);
* ``licence/install``: a :class:`LicenceInstaller`;
* ``keys/rotate``: a :class:`KeyRotator`.

A verb whose part is absent replies ``not_available`` and actuates nothing.
Parts raise their own :class:`~facegate.runtime.errors.CodedError` subclasses;
the service maps them to reply codes with :func:`coded` (the command layer
imports no subsystem's errors).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from ...runtime import __version__
from ...runtime.clock import Clock, utc_iso
from ...runtime.errors import CodedError
from ..access.remote import RemoteOpen, RemoteOpenDenied
from ..door.errors import DoorError
from .errors import CommandError, CommandRefused, VerbFailed, VerbNotAvailable

Result = dict[str, Any]



@dataclass(frozen=True, slots=True)
class Invocation:
    """One authenticated, schema-valid command."""

    verb: str
    args: Mapping[str, Any]
    operator: str | None
    nonce: str

    @property
    def cause(self) -> str:
        """What actuators record as the cause (no operator name: it may be personal data)."""
        return f"command:{self.nonce}"


Handler = Callable[[Invocation], Awaitable[Result]]

_MISSING = {
    "licence/install": "licensing is off on this device ([licence] enabled = false)",
    "open": "this device has no door controller",
    "lockdown": "this device has no door controller",
    "release": "this device has no door controller",
    "keys/rotate": "this device has no key store",
}
_PRIVACY = "this device has no store/privacy policy (storage disabled)"
_MISSING |= {v: _PRIVACY for v in ("enroll", "erase", "export", "withdraw", "rectify")}
_MISSING |= {v: _PRIVACY for v in ("restrict", "unrestrict", "hold", "hold/release", "destroy")}


class VerbTable:
    """verb -> handler; unknown or unbound verbs raise VerbNotAvailable."""

    def __init__(self) -> None:
        self._handlers: dict[str, Handler] = {}

    def bind(self, verb: str, handler: Handler) -> None:
        self._handlers[verb] = handler

    def bound(self) -> tuple[str, ...]:
        return tuple(sorted(self._handlers))

    async def run(self, inv: Invocation) -> Result:
        handler = self._handlers.get(inv.verb)
        if handler is None:
            why = _MISSING.get(inv.verb, "the part implementing it is not in this build")
            raise VerbNotAvailable(f"'{inv.verb}' is not available on this device: {why}")
        return await handler(inv)


class Door(Protocol):
    """The door controller's command API (facegate.handlers.door.DoorController)."""

    async def open(self, cause: str) -> None: ...

    def lockdown(self, cause: str = ...) -> None: ...

    def release(self, cause: str = ...) -> None: ...


class PrivacyActions(Protocol):
    """Data-subject rights, implemented by the policy layer (:class:`facegate.policy.actions.PrivacyActions`).

    ``actor`` is the verified operator's name (recorded in the audit log, never
    in an event). Each returns a reply ``result`` of ids and counts only and
    raises a :class:`~facegate.runtime.errors.CodedError` with a stable code on
    failure (``consent_required``, ``unknown_subject``, ``image_rejected:<reason>``, ...).
    """

    async def enroll(
        self, image: bytes, *, consent_ref: str, subject_id: str | None, actor: str
    ) -> Result: ...

    async def erase(self, subject_id: str, *, reason: str, actor: str) -> Result: ...

    async def export(self, subject_id: str, *, recipient_key: bytes | None, actor: str) -> Result: ...

    async def withdraw(self, subject_id: str, *, consent_ref: str | None, actor: str) -> Result: ...

    async def rectify(self, subject_id: str, attributes: Mapping[str, Any], *, actor: str) -> Result: ...


class LicenceInstaller(Protocol):
    """Installs a licence blob."""

    async def install(self, blob: bytes) -> Result: ...


class KeyRotator(Protocol):
    """Rotates the storage KEK (may refuse with ``not_supported_while_running``)."""

    async def rotate(self, *, actor: str) -> Result: ...


@dataclass(frozen=True, slots=True)
class Tunable:
    """One runtime-tunable setting: ``apply(value)`` validates and applies, or raises ValueError."""

    doc: str
    apply: Callable[[Any], None]


class Tunables:
    """Settings that ``cmd/set`` may change at run time (each component registers its own)."""

    def __init__(self) -> None:
        self._items: dict[str, Tunable] = {}

    def register(self, key: str, tunable: Tunable) -> None:
        self._items[key] = tunable

    def keys(self) -> tuple[str, ...]:
        return tuple(sorted(self._items))

    def apply(self, key: str, value: Any) -> None:
        item = self._items.get(key)
        if item is None:
            raise CommandRefused(
                f"unknown setting {key!r}; settable: {', '.join(self.keys())}", code="bad_args"
            )
        try:
            item.apply(value)
        except (ValueError, TypeError) as exc:
            raise CommandRefused(f"{key}: {exc}", code="bad_args") from None


def _b64(value: str, what: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise CommandRefused(f"{what} is not valid base64", code="bad_args") from None


def coded(exc: CodedError) -> CommandError:
    """The reply error of a part's coded error: a refusal for bad input, else a failure."""
    if exc.bad_input:
        return CommandRefused(str(exc), code=exc.code)
    return VerbFailed(str(exc), code=exc.code)


@dataclass(frozen=True)
class VerbParts:
    """The device parts verbs act on; a verb whose part is None is not bound (``not_available``)."""

    door: Door | None = None
    privacy: PrivacyActions | None = None
    licence: LicenceInstaller | None = None
    keys: KeyRotator | None = None
    rights: RightsActions | None = None
    destroy: Decommissioner | None = None
    remote_open: RemoteOpen | None = None


def device_verbs(
    *, clock: Clock, device_id: str, tunables: Tunables, parts: VerbParts | None = None
) -> VerbTable:
    """Bind ``ping``, ``set`` and every verb whose part is given."""
    table = VerbTable()
    p = parts or VerbParts()
    door, privacy, licence, keys = p.door, p.privacy, p.licence, p.keys
    rights, destroy, remote_open = p.rights, p.destroy, p.remote_open

    async def ping(inv: Invocation) -> Result:
        return {"pong": True, "version": __version__, "time": utc_iso(clock.wall())}

    table.bind("ping", ping)

    async def set_(inv: Invocation) -> Result:
        tunables.apply(str(inv.args["key"]), inv.args["value"])
        return {"key": inv.args["key"], "value": inv.args["value"]}

    table.bind("set", set_)

    if door is not None:
        _bind_door(table, door)
    if remote_open is not None:
        bind_remote_open(table, remote_open)
    if privacy is not None:
        _bind_privacy(table, privacy)
    if rights is not None:
        bind_rights(table, rights)
    if destroy is not None:
        bind_destroy(table, destroy)
    if licence is not None:
        lic = licence

        async def install(inv: Invocation) -> Result:
            return await lic.install(_b64(str(inv.args["licence_b64"]), "licence_b64"))

        table.bind("licence/install", install)
    if keys is not None:
        rot = keys

        async def rotate(inv: Invocation) -> Result:
            return await rot.rotate(actor=_actor(inv))

        table.bind("keys/rotate", rotate)
    return table


def _bind_door(table: VerbTable, door: Door) -> None:
    from ..door.errors import DoorError, DoorLockedDownError  # noqa: PLC0415  # optional part

    async def open_(inv: Invocation) -> Result:
        try:
            await door.open(inv.cause)
        except DoorLockedDownError:
            raise VerbFailed("the door is in lockdown", code="locked_down") from None
        except DoorError as exc:
            raise VerbFailed(f"door: {exc}") from None
        return {"opened": True}

    async def lockdown(inv: Invocation) -> Result:
        door.lockdown(inv.cause)
        return {"lockdown": True}

    async def release(inv: Invocation) -> Result:
        door.release(inv.cause)
        return {"lockdown": False}

    table.bind("open", open_)
    table.bind("lockdown", lockdown)
    table.bind("release", release)


def _actor(inv: Invocation) -> str:
    return inv.operator or "mqtt"


def _bind_privacy(table: VerbTable, p: PrivacyActions) -> None:
    async def enroll(inv: Invocation) -> Result:
        image = _b64(str(inv.args["image_b64"]), "image_b64")
        sid = inv.args.get("subject_id")
        return await p.enroll(
            image, consent_ref=str(inv.args["consent_ref"]), subject_id=sid, actor=_actor(inv)
        )

    async def erase(inv: Invocation) -> Result:
        return await p.erase(
            str(inv.args["subject_id"]), reason=str(inv.args.get("reason", "request")), actor=_actor(inv)
        )

    async def export(inv: Invocation) -> Result:
        key = inv.args.get("recipient_key_b64")
        recipient = None if key is None else _b64(str(key), "recipient_key_b64")
        return await p.export(str(inv.args["subject_id"]), recipient_key=recipient, actor=_actor(inv))

    async def withdraw(inv: Invocation) -> Result:
        ref = inv.args.get("consent_ref")
        return await p.withdraw(str(inv.args["subject_id"]), consent_ref=ref, actor=_actor(inv))

    async def rectify(inv: Invocation) -> Result:
        return await p.rectify(str(inv.args["subject_id"]), dict(inv.args["attributes"]), actor=_actor(inv))

    for verb, fn in (
        ("enroll", enroll),
        ("erase", erase),
        ("export", export),
        ("withdraw", withdraw),
        ("rectify", rectify),
    ):
        table.bind(verb, fn)


class RightsActions(Protocol):
    """Restriction of processing and legal hold (the policy's rights actions)."""

    async def restrict(self, subject_id: str, *, reason: str, actor: str) -> Result: ...

    async def unrestrict(self, subject_id: str, *, actor: str) -> Result: ...

    async def hold(self, subject_id: str | None, *, reason: str, days: int, actor: str) -> Result: ...

    async def release_hold(self, hold_id: str, *, actor: str) -> Result: ...


def bind_rights(table: VerbTable, rights: RightsActions) -> None:
    """Bind ``restrict``, ``unrestrict``, ``hold``, ``hold/release`` (the policy's rights actions)."""

    async def restrict(inv: Invocation) -> Result:
        reason = str(inv.args.get("reason", "request"))
        return await rights.restrict(str(inv.args["subject_id"]), reason=reason, actor=_actor(inv))

    async def unrestrict(inv: Invocation) -> Result:
        return await rights.unrestrict(str(inv.args["subject_id"]), actor=_actor(inv))

    async def hold(inv: Invocation) -> Result:
        sid = inv.args.get("subject_id")
        return await rights.hold(
            None if sid is None else str(sid),
            reason=str(inv.args["reason"]),
            days=int(inv.args["days"]),
            actor=_actor(inv),
        )

    async def release(inv: Invocation) -> Result:
        return await rights.release_hold(str(inv.args["hold_id"]), actor=_actor(inv))

    for verb, fn in (
        ("restrict", restrict),
        ("unrestrict", unrestrict),
        ("hold", hold),
        ("hold/release", release),
    ):
        table.bind(verb, fn)


class Decommissioner(Protocol):
    """Remote ``destroy`` with two operator signatures (policy.remote_destroy)."""

    async def destroy(self, *, operator: str | None, nonce: str, args: Mapping[str, Any]) -> Result: ...


def bind_destroy(table: VerbTable, teardown: Decommissioner) -> None:
    """Bind ``destroy`` (the policy's two-signature remote teardown)."""

    async def destroy(inv: Invocation) -> Result:
        return await teardown.destroy(operator=inv.operator, nonce=inv.nonce, args=inv.args)

    table.bind("destroy", destroy)


def bind_remote_open(table: VerbTable, opener: RemoteOpen) -> None:
    """Bind ``open`` to the remote-open path (it replaces the door-only binding).

    Optional args ``subject`` (a subject id) and ``group`` (an access group) are
    authorised like a face; the reply carries the decision's id and reason codes only.
    """

    async def open_(inv: Invocation) -> Result:
        subject = inv.args.get("subject")
        group = inv.args.get("group")
        try:
            decision = await opener.open(
                cause=inv.cause,
                operator=inv.operator,
                subject=str(subject) if subject is not None else None,
                group=str(group) if group is not None else None,
            )
        except RemoteOpenDenied as exc:
            code = "locked_down" if exc.decision.reason == "lockdown" else exc.decision.reason
            raise VerbFailed(f"remote open denied: {exc.decision.reason}", code=code) from None
        except DoorError as exc:
            raise VerbFailed(f"door: {exc}") from None
        return {"opened": True, "decision": decision.event_id, "reason": decision.reason}

    table.bind("open", open_)
