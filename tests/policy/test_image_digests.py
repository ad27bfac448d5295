"""The keyed image digest of enrolment (resumable enrolment): erased with its template, never outside the DB.

Real parts: the real SQLite file pair, the real vault key, the real OpenCV decoder,
the real CLI and models.
"""

from __future__ import annotations

import base64
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
import structlog
from facegate.handlers.recognition.engine import RecognitionEngine
from facegate.handlers.recognition.image import decode_image
from facegate.handlers.recognition.matcher import Matcher
from facegate.policy import Policy
from facegate.policy.actions import PrivacyActions
from facegate.policy.core import EnrolItem
from facegate.policy.errors import PolicyActionError
from facegate.policy.retention import sweep
from facegate.policy.teardown import destroy
from facegate.runtime.app.cli import main
from facegate.runtime.clock import ManualClock
from facegate.runtime.config import load_config
from facegate.runtime.config.privacy import PrivacySection
from facegate.runtime.config.recognition import RecognitionSection
from facegate.storage import Store, image_sources
from facegate.storage.image_digest import IMAGE_DIGEST_SECRET, ImageDigester, image_digester
from facegate.storage.secrets import device_secret

from .conftest import DAY, MODEL, consent_adult, embeddings
from .enrol_util import FACES, PHOTOS, consent, write_config


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    yield
    structlog.reset_defaults()


def _pixels(photo: str) -> np.ndarray:
    img = cv2.imread(str(FACES / photo), cv2.IMREAD_COLOR)
    assert img is not None
    return img


def _forms(secret: bytes) -> list[bytes]:
    """Every way a digest or key could be written out: raw, hex (both cases), base64 (both alphabets)."""
    return [
        secret,
        secret.hex().encode(),
        secret.hex().upper().encode(),
        base64.b64encode(secret),
        base64.urlsafe_b64encode(secret).rstrip(b"="),
    ]


def _files_holding(folder: Path, secret: bytes) -> list[str]:
    hits = []
    for f in sorted(folder.rglob("*")):
        if f.is_file():
            data = f.read_bytes()
            if any(form in data for form in _forms(secret)):
                hits.append(f.name)
    return hits


@pytest.mark.asyncio
@pytest.mark.parametrize("path", ["erase", "withdraw", "retention", "teardown"])
async def test_no_image_digest_of_an_erased_subject_remains(
    path: str, policy: Policy, matcher: Matcher, clock: ManualClock, tmp_path: Path
) -> None:
    """Erasure, withdrawal, retention and teardown delete the digest with the template, in every file."""
    doomed_cid = await consent_adult(policy, "X1")
    await consent_adult(policy, "K1")
    digester = await image_digester(policy.store)
    doomed = [digester.of_pixels(_pixels(PHOTOS[0])), digester.of_pixels(_pixels(PHOTOS[1]))]
    kept = digester.of_pixels(_pixels(PHOTOS[2]))
    await policy.enrol_many([EnrolItem("X1", embeddings(2, seed=1), sources=doomed)], MODEL, actor="op")
    await policy.enrol_many([EnrolItem("K1", embeddings(1, seed=2), sources=[kept])], MODEL, actor="op")
    await policy.store.checkpoint()
    assert all(_files_holding(tmp_path, d) for d in doomed)  # the probe sees them while enrolled
    if path == "erase":
        await policy.erase_subject("X1", actor="op")
    elif path == "withdraw":
        await policy.withdraw_consent(doomed_cid, actor="subject-app")
    elif path == "retention":
        await clock.advance(200 * DAY)
        await policy.record_match("K1", clock.wall())
        await clock.advance(165 * DAY + 1)  # X1 idle for template_idle_days: the sweeper erases it
        assert (await sweep(policy)).counts["erased_idle"] == 1
    else:
        await destroy(policy, actor="op")
    await policy.store.checkpoint()
    db = policy.store.db
    assert await image_sources.owners(db, doomed) == {}
    for d in doomed:
        assert _files_holding(tmp_path, d) == [], path  # main file, WAL, vault: zeroed or gone
    if path == "teardown":
        assert await image_sources.owners(db, [kept]) == {}
    else:
        assert await image_sources.owners(db, [kept]) == {kept: "K1"}  # others are untouched


@pytest.mark.asyncio
async def test_the_digest_key_lives_sealed_in_the_vault_and_is_stable(policy: Policy, tmp_path: Path) -> None:
    """Keyed, not a plain hash: another key gives another digest; the key is never in clear on disk."""
    key = await device_secret(policy.store, IMAGE_DIGEST_SECRET)
    again = await image_digester(policy.store)
    pixels = _pixels(PHOTOS[0])
    assert again.of_pixels(pixels) == ImageDigester(key).of_pixels(pixels)  # same key on every load
    assert ImageDigester(bytes(32)).of_pixels(pixels) != again.of_pixels(pixels)
    assert "key hidden" in repr(again) and key.hex() not in repr(again)
    await policy.store.checkpoint()
    assert _files_holding(tmp_path, key) == []  # sealed under the KEK, never written in clear


@pytest.mark.timeout(300)  # real models through the CLI on a loaded CI machine
def test_image_digest_never_leaves_the_database(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """No digest (or its key) in a log line, CLI output, export, outbox (MQTT) payload or other file."""
    cfg = write_config(tmp_path)
    consent(cfg, "E1")
    photo = FACES / PHOTOS[0]
    c = str(cfg)
    assert main(["subjects", "enrol", "-c", c, "E1", "--image", str(photo)]) == 0
    assert main(["subjects", "enrol", "-c", c, "E1", "--image", str(photo)]) == 0  # the skip path logs too
    export = tmp_path / "export.json"
    assert main(["subjects", "export", "-c", c, "E1", "--out", str(export)]) == 0
    assert main(["subjects", "show", "-c", c, "E1"]) == 0
    captured = capsys.readouterr()
    logs_and_output = (captured.out + captured.err).encode()
    assert b"already enrolled from this image" in logs_and_output

    loaded = load_config(cfg)
    rec = loaded.config.recognition
    pixels = decode_image(photo.read_bytes(), max_bytes=rec.max_image_bytes, max_pixels=rec.max_image_pixels)

    async def device_side() -> tuple[bytes, bytes]:
        async with Store.from_config(loaded.config.storage) as store:
            key = await device_secret(store, IMAGE_DIGEST_SECRET)
            return key, (await image_digester(store)).of_pixels(pixels)

    import asyncio  # noqa: PLC0415  # a sync test (the CLI runs its own loop)

    key, digest = asyncio.run(device_side())
    db = tmp_path / "g.db"
    with sqlite3.connect(db) as conn:
        assert [bytes(r[0]) for r in conn.execute("SELECT source_digest FROM templates")] == [digest]
        outbox = b"".join(bytes(r[0]) for r in conn.execute("SELECT payload FROM outbox"))
        audit = "".join(str(r[0]) for r in conn.execute("SELECT detail FROM audit")).encode()
    conn.close()
    for secret in (digest, key):
        for form in _forms(secret):
            assert form not in logs_and_output
            assert form not in outbox and form not in audit
    assert _files_holding(tmp_path, key) == []
    # Only the database file pair holds the digest (the vault holds neither it nor the key in clear).
    assert set(_files_holding(tmp_path, digest)) <= {"g.db", "g.db-wal"}
    body = json.loads(json.loads(export.read_text())["payload"])
    assert body["enrolment"]["templates_from_recorded_image"] == 1  # a count, never the digest


@pytest.mark.asyncio
@pytest.mark.timeout(300)  # loads the real models
async def test_photo_verb_is_idempotent_and_one_photo_enrols_one_person(
    store: Store, privacy: PrivacySection, clock: ManualClock
) -> None:
    """The MQTT enrol-by-photo verb's action records the digest too: same photo again adds nothing."""
    engine = await RecognitionEngine.create(RecognitionSection())
    policy = await Policy(store, privacy, clock=clock, device_id="gate-1").open()
    actions = PrivacyActions(policy, engine.embed_image, image_files=engine)
    cid = await consent_adult(policy, "M1")
    other = await consent_adult(policy, "M2")
    photo = (FACES / PHOTOS[0]).read_bytes()
    first = await actions.enroll(photo, consent_ref=cid, subject_id=None)
    assert first["templates_added"] == 1 and first["already_enrolled"] == 0 and first["created_subject"]
    again = await actions.enroll(photo, consent_ref=cid, subject_id=None)
    assert again["templates_added"] == 0 and again["already_enrolled"] == 1
    with pytest.raises(PolicyActionError) as refused:
        await actions.enroll(photo, consent_ref=other, subject_id=None)
    assert refused.value.code == "image_enrols_another_subject"
    assert "M1" not in str(refused.value)  # the other subject is not named
    rows = await store.db.fetchall("SELECT subject_id FROM templates")
    assert rows == [("M1",)]
