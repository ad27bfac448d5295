"""``facegate licence ...``: vendor tooling, device tooling and the seat service.

Vendor (never on a device): ``keygen``, ``issue``, ``inspect``, ``serve`` (the fleet seat
service) and ``seats`` (list/revoke/release in its seat table). Device: ``fingerprint``,
``install`` and ``status`` (``-c`` the device config). See docs/licence.md.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import sys
import time
from pathlib import Path
from typing import Any

from ....policy.licence import document as doc
from ....policy.licence.errors import LicenceError
from ....policy.licence.keys import read_private_key, write_private_key
from ...clock import utc_iso
from . import EXIT_FAILURE, EXIT_OK, EXIT_USAGE


def register(sub: Any) -> None:
    """Add the ``licence`` command group."""
    p = sub.add_parser("licence", help="device-bound licence: fingerprint, issue, install, status, seats")
    cmds = p.add_subparsers(dest="licence_command", metavar="ACTION", required=True)
    gen = cmds.add_parser("keygen", help="(vendor) create an Ed25519 vendor or seat-service key pair")
    gen.add_argument("--out", type=Path, required=True, help="private key file to create (0600)")
    gen.set_defaults(handler=_keygen)
    iss = cmds.add_parser("issue", help="(vendor) issue a signed licence")
    iss.add_argument("--key", type=Path, required=True, help="vendor private key file")
    bind = iss.add_mutually_exclusive_group(required=True)
    bind.add_argument("--fingerprint", metavar="H", help="kiosk fingerprint hash (licence fingerprint)")
    bind.add_argument("--install-id", metavar="H", help="app-mode install id (licence fingerprint)")
    bind.add_argument("--pool", type=int, metavar="SEATS", help="a seat pool for 'licence serve'")
    iss.add_argument("--service-key", metavar="B64", help="public key of the seat service (with --pool)")
    iss.add_argument("--days", type=float, required=True, help="validity in days from now")
    iss.add_argument("--grace-days", type=int, default=7, help="days the device keeps working after expiry")
    iss.add_argument("--feature", action="append", default=[], metavar="K=V", help="feature (repeatable)")
    iss.add_argument("--customer", default="", help="customer name (kept in the licence)")
    iss.add_argument("--out", type=Path, help="output file (default: stdout)")
    iss.set_defaults(handler=_issue)
    ins = cmds.add_parser("inspect", help="(vendor) show a licence file; verify with --trust")
    ins.add_argument("file", type=Path)
    ins.add_argument("--trust", action="append", default=[], metavar="B64", help="trusted public key")
    ins.set_defaults(handler=_inspect)
    fp = cmds.add_parser("fingerprint", help="(device) print the hash a vendor needs to issue a licence")
    fp.add_argument("-c", "--config", type=Path, required=True, help="firmware config TOML")
    fp.set_defaults(handler=_fingerprint)
    inst = cmds.add_parser("install", help="(device) verify and install a licence file atomically")
    inst.add_argument("file", type=Path)
    inst.add_argument("-c", "--config", type=Path, required=True, help="firmware config TOML")
    inst.set_defaults(handler=_install)
    st = cmds.add_parser("status", help="(device) the licence state of the installed licence")
    st.add_argument("-c", "--config", type=Path, required=True, help="firmware config TOML")
    st.set_defaults(handler=_status)
    from ....policy.licence.serve_cli import register_serve  # noqa: PLC0415  # keeps this module short

    register_serve(cmds)


def _keygen(args: argparse.Namespace) -> int:
    public = write_private_key(args.out)
    print(f"private key: {args.out} (keep it off devices)")
    print(f"public key (add under [licence.vendor_keys] of each device): {public}")
    return EXIT_OK


def _issue(args: argparse.Namespace) -> int:
    key = read_private_key(args.key)
    try:
        features = dict(doc.parse_feature(f) for f in args.feature)
    except ValueError as exc:
        print(f"facegate: {exc}", file=sys.stderr)
        return EXIT_USAGE
    extra: dict[str, Any] = {}
    if args.pool is not None:
        if not args.service_key or args.pool < 1:
            print("facegate: --pool needs a positive seat count and --service-key", file=sys.stderr)
            return EXIT_USAGE
        try:
            service = base64.b64decode(args.service_key, validate=True)
        except ValueError:
            print("facegate: --service-key is not base64", file=sys.stderr)
            return EXIT_USAGE
        binding = ("pool", doc.key_id(service))
        extra = {"seats": args.pool, "service_key": args.service_key}
    elif args.fingerprint:
        binding = ("fingerprint", args.fingerprint)
    else:
        binding = ("install", args.install_id)
    if args.pool is None and (len(binding[1]) != 64 or any(c not in "0123456789abcdef" for c in binding[1])):
        print("facegate: a fingerprint / install id is 64 lowercase hex digits", file=sys.stderr)
        return EXIT_USAGE
    body = doc.make_body(
        binding=binding,
        now=time.time(),
        days=args.days,
        features=features,
        customer=args.customer,
        grace_days=args.grace_days,
        extra=extra,
    )
    blob = doc.sign(body, key)
    if args.out is None:
        sys.stdout.write(blob.decode())
    else:
        args.out.write_bytes(blob)
        print(f"licence {body['licence_id']} written to {args.out}")
    return EXIT_OK


def _inspect(args: argparse.Namespace) -> int:
    from ....policy.licence.serve_cli import _read  # noqa: PLC0415

    lic = doc.parse(_read(args.file))
    body = dict(lic.body)
    body.pop("pool", None)
    for name in ("not_before", "not_after", "issued_at"):
        body[name] = f"{body[name]} ({utc_iso(body[name])})"
    print(json.dumps({"key_id": lic.key_id, "body": body}, indent=2, sort_keys=True))
    if args.trust:
        trusted = {doc.key_id(base64.b64decode(k)): base64.b64decode(k) for k in args.trust}
        try:
            doc.verify(lic, trusted)
        except LicenceError as exc:
            print(f"signature: NOT OK: {exc}")
            return EXIT_FAILURE
        print("signature: ok")
    return EXIT_OK


async def _device(config: Path, action: str, blob: bytes | None = None) -> dict[str, Any]:
    from ....policy.licence.manager import LicenceManager, status_payload  # noqa: PLC0415  # device path
    from ....storage import Store  # noqa: PLC0415
    from ...bus import EventBus  # noqa: PLC0415
    from ...clock import SystemClock  # noqa: PLC0415
    from ...config import load_config  # noqa: PLC0415
    from ...logs import configure_logging  # noqa: PLC0415

    cfg = load_config(config).config
    # stdout carries only the answer (scripts read the fingerprint); warnings go to stderr.
    configure_logging(device_id=cfg.device.id, level="warning")
    clock = SystemClock()
    store = Store.from_config(cfg.storage, clock=clock, register_kek=False)
    async with store, LicenceManager(cfg.licence, store=store, bus=EventBus(), clock=clock) as manager:
        if action == "fingerprint":
            return {
                "fingerprint": manager.fingerprint.value,
                "mode": manager.fingerprint.mode,
                "sources": list(manager.fingerprint.slots),
            }
        if action == "install" and blob is not None:
            await manager.install(blob)
        return status_payload(manager.status, clock.wall())


def _fingerprint(args: argparse.Namespace) -> int:
    out = asyncio.run(_device(args.config, "fingerprint"))
    print(out["fingerprint"])
    print(
        f"(mode {out['mode']}; from {', '.join(out['sources'])}; only this hash leaves the device)",
        file=sys.stderr,
    )
    return EXIT_OK


def _install(args: argparse.Namespace) -> int:
    from ....policy.licence.errors import LicenceNotInstalled  # noqa: PLC0415

    try:
        from ....policy.licence.serve_cli import _read  # noqa: PLC0415

        out = asyncio.run(_device(args.config, "install", _read(args.file)))
    except LicenceNotInstalled as exc:
        print(f"facegate: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    print(f"installed: state {out['state']}, licence {out['licence_id']}, expires {out['expires']}")
    return EXIT_OK


def _status(args: argparse.Namespace) -> int:
    out = asyncio.run(_device(args.config, "status"))
    print(json.dumps(out, indent=2, sort_keys=True))
    return EXIT_OK if out["state"] in ("valid", "grace") else EXIT_FAILURE
