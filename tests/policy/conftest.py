"""Fixtures for the policy tests: a real SQLite file pair, an env KEK, the real matcher."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import pytest_asyncio
from facegate.handlers.recognition.matcher import Matcher
from facegate.policy import ConsentKind, ConsentMethod, ConsentRecord, Guardian, Policy
from facegate.runtime.clock import ManualClock
from facegate.runtime.config.privacy import PrivacySection
from facegate.storage import Store

MODEL = "sface-2021dec"
DIM = 128
DAY = 86_400.0
EVIDENCE = "sha256:" + "ab" * 32


def embeddings(n: int, seed: int = 0) -> npt.NDArray[np.float32]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def matches(matcher: Matcher, subject_id: str, probe: npt.NDArray[np.float32]) -> bool:
    """True if ``subject_id`` is the best match for ``probe`` with a near-identity score."""
    best = matcher.search(probe, k=1).best
    return best is not None and best.subject_id == subject_id and best.score > 0.99


def privacy_events(payloads: list[bytes]) -> list[dict[str, object]]:
    return [json.loads(p) for p in payloads]




@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "policy.db"






@pytest.fixture
def privacy() -> PrivacySection:
    return PrivacySection()


@pytest.fixture
def matcher() -> Matcher:
    return Matcher(MODEL, DIM, threads=1)




@pytest_asyncio.fixture
async def policy(store: Store, privacy: PrivacySection, clock: ManualClock, matcher: Matcher) -> Policy:
    return await Policy(store, privacy, clock=clock, sink=matcher, device_id="gate-1").open()


async def consent_adult(policy: Policy, subject_id: str, *, expires_at: float | None = None) -> str:
    """Record an adult's age band and an active biometric consent; returns the consent id."""
    await policy.consents.record_age(subject_id, birth_date=date(1990, 5, 17), actor="op-1")
    rec = await policy.consents.grant(
        subject_id=subject_id,
        kind=ConsentKind.BIOMETRIC,
        method=ConsentMethod.KIOSK,
        evidence_digest=EVIDENCE,
        actor="op-1",
        expires_at=expires_at,
        activate=True,
    )
    return rec.consent_id


async def grant(
    policy: Policy, subject_id: str, kind: ConsentKind, method: ConsentMethod, *, activate: bool = True
) -> ConsentRecord:
    """A consent of ``kind`` given by ``method`` (actor ``op``), active unless ``activate`` is False."""
    return await policy.consents.grant(
        subject_id=subject_id,
        kind=kind,
        method=method,
        evidence_digest=EVIDENCE,
        actor="op",
        activate=activate,
    )


async def consent_guardian(policy: Policy, subject_id: str) -> str:
    rec = await policy.consents.grant(
        subject_id=subject_id,
        kind=ConsentKind.GUARDIAN,
        method=ConsentMethod.PAPER,
        evidence_digest=EVIDENCE,
        actor="op-1",
        guardian=Guardian(guardian_id="G-77", relationship="mother", evidence_digest=EVIDENCE),
        activate=True,
    )
    return rec.consent_id
