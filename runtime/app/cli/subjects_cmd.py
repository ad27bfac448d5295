"""``facegate subjects ...``: consent and data-subject rights from the command line.

Every action goes through :mod:`facegate.policy` (the same functions the MQTT
command layer calls) and is audited there. Output never shows a template;
``show`` prints the display name only with ``--reveal``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import getpass
import json
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from ....policy import (
    AgeBand,
    ConsentKind,
    ConsentMethod,
    Guardian,
    Policy,
    device_public_key,
    export_subject,
    verify_export,
)
from ....policy.image_files import (
    ALREADY_ENROLLED_TEXT,
    ANOTHER_SUBJECT_TEXT,
    ImageStatus,
    enrol_image_files,
)
from ....storage import Store
from ....storage.filemodes import write_private
from ...clock import SystemClock, utc_iso
from ...config import LoadedConfig, load_config
from . import EXIT_USAGE


def _actor(args: argparse.Namespace) -> str:
    return str(args.actor or f"cli:{getpass.getuser()}")


@asynccontextmanager
async def _policy(loaded: LoadedConfig) -> AsyncIterator[Policy]:
    cfg = loaded.config
    clock = SystemClock()
    async with Store.from_config(cfg.storage, clock=clock, register_kek=False) as store:
        yield await Policy(store, cfg.privacy, clock=clock, device_id=cfg.device.id).open()


def _run(args: argparse.Namespace, body: Callable[[Policy], Awaitable[int]]) -> int:
    loaded = load_config(args.config)

    async def main() -> int:
        async with _policy(loaded) as policy:
            return await body(policy)

    return asyncio.run(main())


def _common(p: argparse.ArgumentParser, *, actor: bool = True) -> None:
    p.add_argument("-c", "--config", type=Path, required=True, help="firmware config TOML")
    if actor:
        p.add_argument("--actor", help="operator id recorded in the audit log (default cli:<user>)")


def register(sub: Any) -> None:
    """Add the ``subjects`` command group."""
    p = sub.add_parser("subjects", help="consent, export, rectification and erasure of enrolled people")
    cmds = p.add_subparsers(dest="subjects_command", metavar="ACTION", required=True)

    c = cmds.add_parser("list", help="list enrolled subjects (ids, counts, dates; no names)")
    _common(c, actor=False)
    c.set_defaults(handler=_list)
    c = cmds.add_parser("show", help="one subject's metadata and consents")
    _common(c, actor=False)
    c.add_argument("subject")
    c.add_argument("--reveal", action="store_true", help="also print display name and attributes")
    c.set_defaults(handler=_show)
    c = cmds.add_parser("enrol", help="enrol from image files (needs active consent first)")
    _common(c)
    c.add_argument("subject")
    c.add_argument("--image", type=Path, action="append", required=True, help="face photo (repeatable)")
    c.add_argument("--name", help="display name")
    c.set_defaults(handler=_enrol)
    _register_rights(cmds)
    _register_consent(cmds)
    from ._rights_cli import register_rights  # noqa: PLC0415  # restriction, legal hold, re-consent

    register_rights(cmds, _common, _run, _actor)


def _register_rights(cmds: Any) -> None:
    c = cmds.add_parser("export", help="signed JSON export of everything held about a subject")
    _common(c)
    c.add_argument("subject")
    c.add_argument("--out", type=Path, required=True, help="where to write the bundle")
    c.add_argument("--templates", action="store_true", help="include templates (encrypted)")
    c.add_argument("--recipient-key", help="recipient X25519 public key (base64 of 32 bytes, or a file)")
    c.set_defaults(handler=_export)
    c = cmds.add_parser("verify-export", help="verify an export bundle with the device public key")
    c.add_argument("bundle", type=Path)
    c.add_argument("--public-key", required=True, help="device Ed25519 public key (base64, or a file)")
    c.set_defaults(handler=_verify)
    c = cmds.add_parser("public-key", help="print the device export-signing public key (base64)")
    _common(c, actor=False)
    c.set_defaults(handler=_public_key)
    c = cmds.add_parser("rectify", help="correct display name or attributes")
    _common(c)
    c.add_argument("subject")
    c.add_argument("--name", help="new display name")
    c.add_argument("--clear-name", action="store_true", help="remove the display name")
    c.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="set an attribute")
    c.add_argument("--remove", action="append", default=[], metavar="KEY", help="remove an attribute")
    c.set_defaults(handler=_rectify)
    c = cmds.add_parser("age", help="record a birth date or age band")
    _common(c)
    c.add_argument("subject")
    g = c.add_mutually_exclusive_group(required=True)
    g.add_argument("--birth-date", type=date.fromisoformat, help="YYYY-MM-DD")
    g.add_argument("--age-band", choices=[b.value for b in AgeBand])
    c.set_defaults(handler=_age)
    for name, help_text in (
        ("erase", "erase a subject (right to erasure): unmatchable, crypto-shredded, deleted"),
        ("withdraw", "withdraw every consent the subject gave and erase its data"),
    ):
        c = cmds.add_parser(name, help=help_text)
        _common(c)
        c.add_argument("subject")
        c.add_argument("--yes", action="store_true", help="do not ask for confirmation")
        c.set_defaults(handler=_erase, withdraw=name == "withdraw")


def _register_consent(cmds: Any) -> None:
    cp = cmds.add_parser("consent", help="grant, activate or withdraw a consent record")
    ccmds = cp.add_subparsers(dest="consent_command", metavar="ACTION", required=True)
    c = ccmds.add_parser("grant", help="record a consent (pending unless --activate)")
    _common(c)
    c.add_argument("subject")
    c.add_argument("--kind", choices=[k.value for k in ConsentKind], default="biometric")
    c.add_argument("--method", choices=[m.value for m in ConsentMethod], required=True)
    c.add_argument("--evidence", required=True, help="digest of the signed form, e.g. sha256:<hex>")
    c.add_argument("--purpose", default="access_control")
    c.add_argument("--notice-version", help="privacy notice shown (default: config)")
    c.add_argument("--expires", type=date.fromisoformat, help="expiry date YYYY-MM-DD (UTC)")
    c.add_argument("--guardian-id")
    c.add_argument("--relationship")
    c.add_argument("--guardian-evidence")
    c.add_argument("--activate", action="store_true", help="activate at once (consent given now)")
    c.set_defaults(handler=_grant)
    for name in ("activate", "withdraw"):
        c = ccmds.add_parser(name, help=f"{name} one consent record")
        _common(c)
        c.add_argument("consent_id")
        c.set_defaults(handler=_consent_move, move=name)


def _key_arg(value: str) -> bytes:
    path = Path(value)
    text = path.read_text().strip() if path.is_file() else value
    return base64.b64decode(text, validate=True)


def _list(args: argparse.Namespace) -> int:
    async def body(policy: Policy) -> int:
        rows = await policy.store.db.fetchall(
            "SELECT s.subject_id, s.created_at, s.last_match_at, "
            "(SELECT COUNT(*) FROM templates t WHERE t.subject_id = s.subject_id) FROM subjects s "
            "ORDER BY s.subject_id"
        )
        for sid, created, last, n in rows:
            last_text = utc_iso(float(last)) if last is not None else "never"
            print(f"{sid}\ttemplates={n}\tenrolled={utc_iso(float(created))}\tlast_match={last_text}")
        print(f"{len(rows)} subject(s)", file=sys.stderr)
        return 0

    return _run(args, body)


def _show(args: argparse.Namespace) -> int:
    async def body(policy: Policy) -> int:
        bundle = json.loads(await export_subject(policy, args.subject, actor="cli:show"))
        payload = json.loads(bundle["payload"])
        if not args.reveal:
            payload["subject"].pop("display_name", None)
            payload["subject"].pop("attributes", None)
            payload["subject"].pop("birth_date", None)
        payload.pop("access_history", None)
        print(json.dumps(payload, indent=2, sort_keys=True))
        return 0

    return _run(args, body)


def _enrol(args: argparse.Namespace) -> int:
    from ....handlers.recognition.engine import RecognitionEngine  # noqa: PLC0415  # heavy: models

    paths: list[Path] = list(args.image)
    try:
        images = [p.read_bytes() for p in paths]
    except OSError as exc:  # an operator mistake: name the file, no traceback
        print(f"facegate: cannot read image {exc.filename}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_USAGE
    loaded = load_config(args.config)

    async def body(policy: Policy) -> int:
        from ....policy.licence.manager import enrolment_licence  # noqa: PLC0415  # only when enrolling

        licence = await enrolment_licence(loaded.config.licence, policy.store)
        if licence is not None:
            await licence.admit_enrolment(args.subject)  # LicenceRequired: a clear error, exit 1
        await policy.require_enrolment_consent(args.subject)  # before loading any model
        engine = await RecognitionEngine.create(loaded.config.recognition, config_path=loaded.path)
        res = await enrol_image_files(
            policy,
            args.subject,
            [(str(p), data) for p, data in zip(paths, images, strict=True)],
            engine,
            actor=_actor(args),
            display_name=args.name,
            all_or_nothing=True,  # as before: one bad image and nothing is enrolled
        )
        for index, out in enumerate(res.outcomes):
            if out.status is ImageStatus.ALREADY_ENROLLED:
                print(f"skipped {out.label}: {ALREADY_ENROLLED_TEXT}")
            elif out.status is ImageStatus.ENROLS_ANOTHER_SUBJECT:
                print(f"facegate: image {index + 1} of {len(paths)} ({out.label}) {ANOTHER_SUBJECT_TEXT}",
                      file=sys.stderr)
            elif out.status is ImageStatus.FAILED and out.message:
                print(f"facegate: image {index + 1} of {len(paths)} ({out.label}) failed: {out.message}",
                      file=sys.stderr)
        if res.refused:
            print(f"facegate: nothing enrolled for {args.subject}", file=sys.stderr)
            return 1
        already = res.count(ImageStatus.ALREADY_ENROLLED)
        note = f" ({already} image(s) skipped: {ALREADY_ENROLLED_TEXT})" if already else ""
        print(f"enrolled {res.subject_id}: {len(res.template_ids)} template(s){note}")
        return 0

    async def main() -> int:
        async with _policy(loaded) as policy:
            return await body(policy)

    return asyncio.run(main())


def _export(args: argparse.Namespace) -> int:
    key = _key_arg(args.recipient_key) if args.recipient_key else None

    async def body(policy: Policy) -> int:
        data = await export_subject(
            policy,
            args.subject,
            actor=_actor(args),
            include_templates=args.templates,
            recipient_public_key=key,
        )
        write_private(args.out, data)  # 0600 whatever the umask: it holds personal data
        print(f"export written to {args.out} (verify with the device public key)")
        return 0

    return _run(args, body)


def _verify(args: argparse.Namespace) -> int:
    body = verify_export(args.bundle.read_bytes(), _key_arg(args.public_key))
    print(f"export OK: subject {body['subject']['subject_id']}, generated {body['generated_at']}")
    return 0


def _public_key(args: argparse.Namespace) -> int:
    async def body(policy: Policy) -> int:
        print(base64.b64encode(await device_public_key(policy.store)).decode())
        return 0

    return _run(args, body)


def _rectify(args: argparse.Namespace) -> int:
    updates: dict[str, str | int | float | bool | None] = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            print(f"facegate: error: --set needs KEY=VALUE, got {item!r}", file=sys.stderr)
            return 2
        updates[key] = value

    async def body(policy: Policy) -> int:
        await policy.rectify(
            args.subject,
            actor=_actor(args),
            display_name=args.name,
            clear_display_name=args.clear_name,
            set_attributes=updates,
            remove_attributes=args.remove,
        )
        print(f"rectified {args.subject}")
        return 0

    return _run(args, body)


def _age(args: argparse.Namespace) -> int:
    async def body(policy: Policy) -> int:
        band = AgeBand(args.age_band) if args.age_band else None
        erased = await policy.record_age(
            args.subject, actor=_actor(args), birth_date=args.birth_date, age_band=band
        )
        print(f"age recorded for {args.subject}")
        if erased is not None:
            print(f"{args.subject} is a minor without guardian consent: erased")
        return 0

    return _run(args, body)


def _confirm(question: str, yes: bool) -> bool:
    if yes:
        return True
    if not sys.stdin.isatty():
        print("facegate: error: not a terminal; pass --yes to confirm", file=sys.stderr)
        return False
    return input(f"{question} [y/N] ").strip().lower() in {"y", "yes"}


def _erase(args: argparse.Namespace) -> int:
    verb = "withdraw all consent of and erase" if args.withdraw else "erase"
    if not _confirm(f"{verb} subject {args.subject}? This cannot be undone.", args.yes):
        return 2

    async def body(policy: Policy) -> int:
        if args.withdraw:
            out = await policy.withdraw_subject(args.subject, actor=_actor(args))
        else:
            out = await policy.erase_subject(args.subject, actor=_actor(args))
        if out.deferred:
            print(f"erasure of {args.subject} deferred: a legal hold keeps the data (unmatchable meanwhile)")
            return 0
        templates = out.receipt.templates if out.receipt else 0
        receipt = out.receipt.receipt_id if out.receipt else "-"
        print(
            f"erased {args.subject}: {templates} template(s), {out.consents_withdrawn} consent(s) "
            f"withdrawn, receipt {receipt}"
        )
        return 0

    return _run(args, body)


def _grant(args: argparse.Namespace) -> int:
    guardian = None
    if args.kind == ConsentKind.GUARDIAN.value:
        if not (args.guardian_id and args.relationship and args.guardian_evidence):
            print(
                "facegate: error: a guardian consent needs --guardian-id, --relationship and "
                "--guardian-evidence",
                file=sys.stderr,
            )
            return 2
        guardian = Guardian(
            guardian_id=args.guardian_id,
            relationship=args.relationship,
            evidence_digest=args.guardian_evidence,
        )
    expires = (
        datetime.combine(args.expires, datetime.min.time(), tzinfo=UTC).timestamp() if args.expires else None
    )

    async def body(policy: Policy) -> int:
        rec = await policy.consents.grant(
            subject_id=args.subject,
            kind=ConsentKind(args.kind),
            method=ConsentMethod(args.method),
            evidence_digest=args.evidence,
            actor=_actor(args),
            purpose=args.purpose,
            notice_version=args.notice_version,
            expires_at=expires,
            guardian=guardian,
            activate=args.activate,
        )
        print(f"consent {rec.consent_id} {rec.kind.value}:{rec.purpose} {rec.state.value}")
        return 0

    return _run(args, body)


def _consent_move(args: argparse.Namespace) -> int:
    async def body(policy: Policy) -> int:
        if args.move == "activate":
            rec = await policy.consents.activate(args.consent_id, actor=_actor(args))
            print(f"consent {rec.consent_id} active")
            return 0
        rec, outcome = await policy.withdraw_consent(args.consent_id, actor=_actor(args))
        print(f"consent {rec.consent_id} withdrawn" + (f"; {rec.subject_id} erased" if outcome else ""))
        return 0

    return _run(args, body)
