"""``keys/rotate`` while the device serves: the store, enrolments and the export key survive."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from facegate.handlers.recognition.matcher import Matcher
from facegate.policy import Policy, device_public_key, export_subject, verify_export
from facegate.policy.device_keys import rewrap_secrets
from facegate.runtime.clock import ManualClock
from facegate.runtime.config.privacy import PrivacySection
from facegate.runtime.config.storage import StorageSection
from facegate.storage import KekSource, KekSourceKind, Store
from facegate.storage.crypto import new_key
from facegate.storage.errors import RotationError
from facegate.storage.kek import write_key_file
from facegate.storage.live_rotation import LiveKeyRotation

from .conftest import DIM, MODEL, consent_adult, embeddings


@pytest.mark.asyncio
async def test_live_rotation_keeps_everything_readable(tmp_path: Path, clock: ManualClock) -> None:
    key_file = tmp_path / "kek"
    write_key_file(key_file, new_key())
    old_key = key_file.read_bytes()
    section = StorageSection(path=tmp_path / "g.db", kek_source="file", kek_file=key_file)
    source = KekSource(kind=KekSourceKind.FILE, file=key_file)
    rotation = LiveKeyRotation(section, publish=None, extra=(rewrap_secrets,))  # as the root wires it
    async with Store(section.path, source, clock=clock) as store:
        matcher = Matcher(MODEL, DIM, threads=1)
        policy = await Policy(store, PrivacySection(), clock=clock, sink=matcher).open()
        for i in range(40):
            await consent_adult(policy, f"s{i}")
            await policy.enrol_subject(f"s{i}", embeddings(1, seed=i), MODEL, actor="op")
        public_before = await device_public_key(store)

        async def keep_enrolling() -> None:
            for i in range(40, 60):
                await consent_adult(policy, f"s{i}")
                await policy.enrol_subject(f"s{i}", embeddings(1, seed=i), MODEL, actor="op")
                await asyncio.sleep(0)

        _, result = await asyncio.gather(keep_enrolling(), rotation.rotate(actor="alice"))
        assert result["subjects"] >= 40 and result["from"] != result["to"]
        await consent_adult(policy, "late")
        await policy.enrol_subject("late", embeddings(1, seed=99), MODEL, actor="op")
    assert key_file.read_bytes() != old_key  # the new KEK is installed
    async with Store(section.path, source, clock=clock) as store:
        sink = Matcher(MODEL, DIM, threads=1)
        report = await store.gallery.load_all(sink)
        assert report.templates == 61 and not report.failures and report.unavailable == 0
        policy = await Policy(store, PrivacySection(), clock=clock).open()
        # The device signing key was re-wrapped too: exports still sign with the same key.
        assert await device_public_key(store) == public_before
        bundle = await export_subject(policy, "s3", actor="op")
        verify_export(bundle, public_before)


@pytest.mark.asyncio
async def test_env_kek_cannot_rotate_inside_the_device(tmp_path: Path) -> None:
    section = StorageSection(path=tmp_path / "g.db", kek_source="env", kek_env="FACEGATE_TEST_KEK")
    with pytest.raises(RotationError) as err:
        await LiveKeyRotation(section, publish=None).rotate(actor="alice")
    assert err.value.code == "not_supported_while_running"
    assert "--new-key-file" in str(err.value)
    assert not section.path.exists()  # nothing was touched
