"""``facegate subjects restrict|unrestrict|hold|reconsent``: restriction, legal hold, re-consent.

Registered by :mod:`.subjects_cmd` into its ``subjects`` group. Each action
calls the same policy functions as the signed MQTT verbs and is audited
there; output holds ids, counts and times only.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, date, datetime
from typing import Any

from ....policy import Policy, holds, reconsent, restriction
from ....policy.errors import ConsentInputError
from ....storage import rights_state
from ...clock import utc_iso

_DAY = 86_400.0


class _Helpers:
    """subjects_cmd's helpers (set once by :func:`register_rights`)."""

    run: Any = None
    actor: Any = None


def register_rights(cmds: Any, common: Any, run: Any, actor: Any) -> None:
    """Add the actions; ``common``/``run``/``actor`` are subjects_cmd's helpers."""
    _Helpers.run, _Helpers.actor = run, actor
    _register_restrict(cmds, common)
    _register_hold(cmds, common)
    c = cmds.add_parser("reconsent", help="who must consent again under the current privacy notice")
    common(c, actor=False)
    c.set_defaults(handler=_reconsent)


def _register_restrict(cmds: Any, common: Any) -> None:
    run, actor = _Helpers.run, _Helpers.actor

    def restrict_(args: argparse.Namespace) -> int:
        async def body(policy: Policy) -> int:
            out = await restriction.restrict(policy, args.subject, actor=actor(args), reason=args.reason)
            state = "restricted" if out.changed else "already restricted"
            print(f"{args.subject}: {state} (kept, unmatchable); receipt {out.receipt_id or '-'}")
            return 0

        return _guard(lambda: run(args, body))

    def unrestrict_(args: argparse.Namespace) -> int:
        async def body(policy: Policy) -> int:
            out = await restriction.unrestrict(policy, args.subject, actor=actor(args))
            state = "restriction lifted" if out.changed else "was not restricted"
            print(f"{args.subject}: {state}; receipt {out.receipt_id or '-'}")
            return 0

        return _guard(lambda: run(args, body))

    c = cmds.add_parser("restrict", help="restrict processing: data kept, never matched (GDPR Art. 18)")
    common(c)
    c.add_argument("subject")
    c.add_argument("--reason", default="request", help="reason code recorded in the audit log")
    c.set_defaults(handler=restrict_)
    c = cmds.add_parser("unrestrict", help="lift a restriction of processing")
    common(c)
    c.add_argument("subject")
    c.set_defaults(handler=unrestrict_)


def _register_hold(cmds: Any, common: Any) -> None:
    run, actor = _Helpers.run, _Helpers.actor

    def hold_set(args: argparse.Namespace) -> int:
        if (args.subject is None) == (not args.device):
            print("facegate: error: give a SUBJECT or --device (not both)", file=sys.stderr)
            return 2

        async def body(policy: Policy) -> int:
            now = policy.clock.wall()
            if args.until is not None:
                until = datetime(args.until.year, args.until.month, args.until.day, tzinfo=UTC).timestamp()
            else:
                until = now + args.days * _DAY
            h = await holds.set_hold(
                policy, args.subject, reason=args.reason, expires_at=until, actor=actor(args)
            )
            scope = "device" if h.subject_id is None else h.subject_id
            print(f"hold {h.hold_id} on {scope} until {utc_iso(h.expires_at)}")
            return 0

        return _guard(lambda: run(args, body))

    def hold_release(args: argparse.Namespace) -> int:
        async def body(policy: Policy) -> int:
            ran = await holds.release_hold(policy, args.hold_id, actor=actor(args))
            print(f"hold {args.hold_id} released; {ran} deferred erasure(s) ran")
            return 0

        return _guard(lambda: run(args, body))

    def hold_list(args: argparse.Namespace) -> int:
        async def body(policy: Policy) -> int:
            for h in await rights_state.open_holds(policy.store.db):
                scope = "device" if h.subject_id is None else h.subject_id
                print(f"{h.hold_id}  {scope}  {h.reason}  until {utc_iso(h.expires_at)}")
            for sid, reason in await rights_state.pending_erasures(policy.store.db):
                print(f"deferred erasure: {sid} ({reason})")
            return 0

        return int(run(args, body))

    hp = cmds.add_parser("hold", help="legal hold: keep data a law, court or authority requires")
    hcmds = hp.add_subparsers(dest="hold_command", metavar="ACTION", required=True)
    c = hcmds.add_parser("set", help="hold one subject (or --device) until a date")
    common(c)
    c.add_argument("subject", nargs="?")
    c.add_argument("--device", action="store_true", help="hold the whole device")
    c.add_argument("--reason", required=True, help="case reference code (A-Z a-z 0-9 _ . : / -)")
    g = c.add_mutually_exclusive_group(required=True)
    g.add_argument("--days", type=int, help="the hold lapses after this many days")
    g.add_argument("--until", type=date.fromisoformat, help="the hold lapses on this UTC date (YYYY-MM-DD)")
    c.set_defaults(handler=hold_set)
    c = hcmds.add_parser("release", help="end a hold now; the erasures it deferred run")
    common(c)
    c.add_argument("hold_id")
    c.set_defaults(handler=hold_release)
    c = hcmds.add_parser("list", help="open holds and deferred erasures")
    common(c, actor=False)
    c.set_defaults(handler=hold_list)


def _reconsent(args: argparse.Namespace) -> int:
    async def body(policy: Policy) -> int:
        st = await reconsent.status(policy)
        if st.deadline is None:
            print(f"notice {st.notice_version}: no re-consent required")
            return 0
        print(
            f"notice {st.notice_version}: effective {utc_iso(st.effective_at or 0)}, grace ends "
            f"{utc_iso(st.deadline)}"
        )
        for sid in st.pending:
            print(f"{sid}  must re-consent (still matchable until the grace period ends)")
        for sid in st.lapsed:
            print(f"{sid}  must re-consent (unmatchable)")
        return 0

    return int(_Helpers.run(args, body))


def _guard(call: Any) -> int:
    """Bad operator input: a clear message and exit 2, nothing written."""
    try:
        return int(call())
    except ConsentInputError as exc:
        print(f"facegate: error: {exc}", file=sys.stderr)
        return 2
