"""Privacy is code: no name, birth date, attribute value or embedding in logs, receipts or audit."""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import date

import numpy as np
import pytest
import structlog
from facegate.policy import ConsentKind, ConsentMethod, Policy, destroy, export_subject, sweep
from facegate.runtime.logs import configure_logging

from .conftest import EVIDENCE, MODEL, embeddings

NAME = "Alice Quintessa Example"
BIRTH = date(1991, 7, 23)
DEPT = "Secret-Projects-Dept"


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    configure_logging(device_id="gate-1", level="debug", fmt="json", stream=stream)
    yield stream
    structlog.reset_defaults()


@pytest.mark.asyncio
async def test_full_lifecycle_leaks_nothing(policy: Policy, log_stream: io.StringIO) -> None:
    emb = embeddings(2, seed=99)
    await policy.record_age("L1", actor="op", birth_date=BIRTH)
    await policy.consents.grant(
        subject_id="L1",
        kind=ConsentKind.BIOMETRIC,
        method=ConsentMethod.KIOSK,
        evidence_digest=EVIDENCE,
        actor="op",
        activate=True,
    )
    await policy.enrol_subject(
        "L1", emb, MODEL, actor="op", display_name=NAME, attributes={"department": DEPT}
    )
    await policy.rectify("L1", actor="op", display_name=NAME + " Jr")
    bundle = await export_subject(policy, "L1", actor="dpo")
    assert NAME.encode() in bundle  # the subject's own copy holds it, nothing else does
    await policy.record_match("L1", policy.clock.wall())
    await sweep(policy)
    await policy.withdraw_subject("L1", actor="subject")
    await destroy(policy, actor="installer")

    logs = log_stream.getvalue()
    assert "policy.erased" in logs and "policy.enrolled" in logs
    outbox = b"\n".join(bytes(r[0]) for r in await policy.store.db.fetchall("SELECT payload FROM outbox"))
    audit = "\n".join(
        " ".join(str(x) for x in r)
        for r in await policy.store.db.fetchall("SELECT actor, action, detail FROM audit")
    )
    floats = [f"{v:.6f}"[:8] for v in np.asarray(emb).ravel()[:16]]
    for where, text in (("logs", logs), ("outbox", outbox.decode()), ("audit", audit)):
        for secret in (NAME, "Quintessa", BIRTH.isoformat(), DEPT):
            assert secret not in text, f"{secret!r} leaked into {where}"
        assert not any(f in text for f in floats), f"embedding values leaked into {where}"
