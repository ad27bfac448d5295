"""The seat service's rules on a real SQLite seat table, driven by the injected clock."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from facegate.handlers.commands import first_error
from facegate.policy.licence import Fingerprint, LicenceState, evaluate, make_body, parse, sign
from facegate.policy.licence.document import DAY, key_id, public_bytes, trust_list
from facegate.policy.licence.seats import SeatService, SeatTable
from facegate.runtime.clock import ManualClock

from .conftest import b64pub

A, B, C = "a" * 64, "b" * 64, "c" * 64


def service(tmp_path: Path, vendor: Ed25519PrivateKey, clock: ManualClock) -> SeatService:
    key = Ed25519PrivateKey.generate()
    body = make_body(
        binding=("pool", key_id(public_bytes(key))),
        now=clock.wall(),
        days=365,
        grace_days=1,
        features={"max_subjects": 9},
        extra={"seats": 2, "service_key": b64pub(key)},
    )
    return SeatService(parse(sign(body, vendor)), key, SeatTable(tmp_path / "seats.db"), clock, lease_s=3600)


def test_seats_revoke_release_extend_lapse(tmp_path: Path, vendor: Ed25519PrivateKey) -> None:
    clock = ManualClock()
    svc = service(tmp_path, vendor, clock)
    ask = lambda fp, op="activate": svc.handle({"op": op, "fingerprint": fp, "corr": "1"})  # noqa: E731
    assert ask(A)["result"] == "granted" and ask(B)["result"] == "granted"
    assert ask(C)["result"] == "no_seat"
    assert ask(A, "renew")["result"] == "granted"  # a holder always renews
    assert first_error("licence_seat_reply", ask(A)) is None
    assert first_error("licence_seat_summary", svc.summary()) is None
    lease = str(ask(A)["lease"]).encode()
    fp = Fingerprint(mode="kiosk", value=A, slots=("serial",))
    status = evaluate(
        lease,
        trusted=trust_list({"v": b64pub(vendor)}),
        fingerprint=fp,
        now=clock.wall(),
        high_water=0,
        tolerance_s=600,
    )
    assert status.state is LicenceState.VALID and status.features == {"max_subjects": 9}
    other = Fingerprint(mode="kiosk", value=B, slots=("serial",))
    assert (
        evaluate(
            lease,
            trusted=trust_list({"v": b64pub(vendor)}),
            fingerprint=other,
            now=clock.wall(),
            high_water=0,
            tolerance_s=600,
        ).state
        is LicenceState.WRONG_DEVICE
    )

    assert svc.table.set_state(A, "revoked", clock.wall())
    assert ask(A, "renew")["result"] == "revoked"
    assert ask(C)["result"] == "granted"  # the revoked seat is reused
    assert svc.summary()["seats_used"] == 2

    assert svc.table.extend(B, clock.wall() + 30 * DAY, clock.wall())
    extended = json.loads(ask(B, "renew")["lease"])["body"]
    assert extended["not_after"] >= clock.wall() + 30 * DAY - 1

    assert svc.table.set_state(C, None, clock.wall())  # released
    assert svc.summary()["seats_used"] == 1

    # C's seat is free again; a lapsed lease (lease + grace days, no renewal) frees a seat too.
    assert ask(C)["result"] == "granted"
    clock.set_wall(clock.wall() + 3600 + DAY + 1)
    assert {d["fingerprint"]: d["state"] for d in svc.summary()["devices"]}[C] == "lapsed"
    assert ask("d" * 64)["result"] == "granted"


def test_bad_requests_and_expired_pool(tmp_path: Path, vendor: Ed25519PrivateKey) -> None:
    clock = ManualClock()
    svc = service(tmp_path, vendor, clock)
    assert svc.handle({"op": "activate", "fingerprint": "ZZ"})["result"] == "error"
    assert svc.handle({"op": "steal", "fingerprint": A})["result"] == "error"
    clock.set_wall(clock.wall() + 367 * DAY)
    reply = svc.handle({"op": "activate", "fingerprint": A})
    assert reply["result"] == "error" and "expired" in reply["detail"]
    assert base64.b64decode(b64pub(vendor))
