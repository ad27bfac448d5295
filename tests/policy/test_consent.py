"""Consent registry and the enrolment rule on a real SQLite file."""

from __future__ import annotations

from datetime import date

import pytest
from facegate.handlers.recognition.matcher import Matcher
from facegate.policy import AgeBand, ConsentKind, ConsentMethod, ConsentState, EnrolItem, Guardian, Policy
from facegate.policy.errors import ConsentInputError, ConsentRequiredError, InvalidTransitionError
from facegate.runtime.clock import ManualClock
from facegate.storage import verify_chain

from .conftest import DAY, EVIDENCE, MODEL, consent_adult, consent_guardian, embeddings, grant


@pytest.mark.asyncio
async def test_consent_lifecycle_is_explicit_and_audited(policy: Policy) -> None:
    rec = await policy.consents.grant(
        subject_id="E1",
        kind=ConsentKind.BIOMETRIC,
        method=ConsentMethod.APP,
        evidence_digest=EVIDENCE,
        actor="op-1",
        notice_version="2",
    )
    assert rec.state is ConsentState.PENDING and rec.granted_at is None
    active = await policy.consents.activate(rec.consent_id, actor="op-1")
    assert active.state is ConsentState.ACTIVE and active.granted_at is not None
    with pytest.raises(InvalidTransitionError):
        await policy.consents.activate(rec.consent_id, actor="op-1")
    stored = await policy.consents.get(rec.consent_id)
    assert stored.notice_version == "2" and stored.method is ConsentMethod.APP
    rows = await policy.store.db.fetchall(
        "SELECT action, detail FROM audit WHERE subject_id = 'E1' ORDER BY seq"
    )
    assert [a for a, _ in rows] == ["consent_change", "consent_change"]
    assert '"to":"pending"' in rows[0][1] and '"to":"active"' in rows[1][1]
    assert verify_chain(policy.store.db.path).ok
    receipts = await policy.store.db.fetchall("SELECT topic FROM outbox WHERE klass = 'provisioning'")
    assert len(receipts) == 2


@pytest.mark.asyncio
async def test_enrolment_refused_without_biometric_consent_names_it(policy: Policy, matcher: Matcher) -> None:
    await policy.consents.record_age("E2", age_band=AgeBand.ADULT, actor="op")
    # A non-biometric consent does not count: biometric consent is separate.
    await grant(policy, "E2", ConsentKind.OTHER, ConsentMethod.API)
    with pytest.raises(ConsentRequiredError) as err:
        await policy.enrol_subject("E2", embeddings(1), MODEL, actor="op")
    assert err.value.missing == "biometric:access_control"
    assert await policy.store.gallery.count_subjects() == 0 and len(matcher) == 0
    # A pending consent is not enough either.
    await grant(policy, "E2", ConsentKind.BIOMETRIC, ConsentMethod.API, activate=False)
    with pytest.raises(ConsentRequiredError):
        await policy.enrol_subject("E2", embeddings(1), MODEL, actor="op")
    # Bulk import: one subject without consent refuses the whole batch.
    await consent_adult(policy, "E3")
    with pytest.raises(ConsentRequiredError) as err:
        await policy.enrol_many(
            [EnrolItem("E3", embeddings(1)), EnrolItem("E2", embeddings(1))], MODEL, actor="op"
        )
    assert err.value.subject_id == "E2"
    assert await policy.store.gallery.count_subjects() == 0


@pytest.mark.asyncio
async def test_enrolment_with_consent_loads_matcher_and_refs_consent(
    policy: Policy, matcher: Matcher
) -> None:
    cid = await consent_adult(policy, "E4")
    emb = embeddings(2, seed=4)
    res = await policy.enrol_subject(
        "E4", emb, MODEL, actor="op", display_name="Ada", attributes={"department": "R&D"}
    )
    assert len(res.template_ids) == 2 and matcher.has_subject("E4")
    row = await policy.store.db.fetchone("SELECT detail FROM audit WHERE action = 'enrol'")
    assert row is not None and cid in row[0]
    rec = await policy.store.gallery.get("E4")
    assert rec.display_name == "Ada" and rec.attributes == {"department": "R&D"}


@pytest.mark.asyncio
async def test_enrolment_needs_an_age_record(policy: Policy) -> None:
    await grant(policy, "E5", ConsentKind.BIOMETRIC, ConsentMethod.KIOSK)
    with pytest.raises(ConsentRequiredError) as err:
        await policy.enrol_subject("E5", embeddings(1), MODEL, actor="op")
    assert err.value.missing == "age"
    await policy.enrol_subject("E5", embeddings(1), MODEL, actor="op", age_band=AgeBand.ADULT)


@pytest.mark.asyncio
async def test_minor_needs_guardian_consent(policy: Policy, clock: ManualClock) -> None:
    # ManualClock starts 2026-01-01; born 2015 -> 10 years old.
    await policy.consents.record_age("K1", birth_date=date(2015, 6, 1), actor="op")
    await grant(policy, "K1", ConsentKind.BIOMETRIC, ConsentMethod.PAPER)
    with pytest.raises(ConsentRequiredError) as err:
        await policy.enrol_subject("K1", embeddings(1), MODEL, actor="op")
    assert err.value.missing == "guardian:access_control"
    await consent_guardian(policy, "K1")
    await policy.enrol_subject("K1", embeddings(1), MODEL, actor="op")
    # An age band below 14 is a minor too; 14-17 is not (minor_age 14).
    await policy.consents.record_age("K2", age_band=AgeBand.FROM_14_TO_17, actor="op")
    await grant(policy, "K2", ConsentKind.BIOMETRIC, ConsentMethod.PAPER)
    await policy.enrol_subject("K2", embeddings(1, seed=2), MODEL, actor="op")


@pytest.mark.asyncio
async def test_bad_consent_input_is_refused_and_nothing_written(policy: Policy, clock: ManualClock) -> None:
    with pytest.raises(ConsentInputError):
        await grant(policy, "E6", ConsentKind.GUARDIAN, ConsentMethod.PAPER, activate=False)
    with pytest.raises(ConsentInputError):
        await policy.consents.grant(
            subject_id="E6",
            kind=ConsentKind.BIOMETRIC,
            method=ConsentMethod.PAPER,
            evidence_digest="x",
            actor="op",
        )
    with pytest.raises(ConsentInputError):
        await policy.consents.grant(
            subject_id="E6",
            kind=ConsentKind.BIOMETRIC,
            method=ConsentMethod.PAPER,
            evidence_digest=EVIDENCE,
            actor="op",
            expires_at=clock.wall() - DAY,
        )
    with pytest.raises(ConsentInputError):
        await policy.consents.grant(
            subject_id="E6",
            kind=ConsentKind.BIOMETRIC,
            method=ConsentMethod.PAPER,
            evidence_digest=EVIDENCE,
            actor="op",
            guardian=Guardian(guardian_id="g", relationship="father", evidence_digest=EVIDENCE),
        )
    with pytest.raises(ConsentInputError):
        await policy.consents.record_age("E6", birth_date=date(2099, 1, 1), actor="op")
    assert await policy.consents.for_subject("E6") == []


@pytest.mark.asyncio
async def test_attributes_outside_the_allow_list_are_not_collected(policy: Policy) -> None:
    await consent_adult(policy, "E7")
    with pytest.raises(ConsentInputError, match="not collected"):
        await policy.enrol_subject("E7", embeddings(1), MODEL, actor="op", attributes={"religion": "x"})
    assert await policy.store.gallery.count_subjects() == 0
