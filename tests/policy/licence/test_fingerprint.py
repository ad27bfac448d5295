"""Fingerprint per deployment mode: sources, fallback order, stability, and what is never opened.

App mode must open no identifier file (proved with ``sys.addaudithook`` on ``open``); kiosk
mode must never log or store a raw identifier (log output and the store files are scanned).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from facegate.policy.licence import FingerprintError, LicenceManager, LicenceState, kiosk_fingerprint
from facegate.policy.licence.fingerprint import SOURCES
from facegate.runtime.bus import EventBus
from facegate.runtime.clock import ManualClock
from facegate.storage import Store

from .conftest import MACHINE, MODEL, SERIAL, section, write_identifiers

IDENTIFIER_FILES = tuple(rel for _, rels in SOURCES for rel in rels)
_opened: list[str] | None = None


def _hook(event: str, args: tuple[Any, ...]) -> None:
    if event == "open" and _opened is not None and args and isinstance(args[0], (str, bytes, Path)):
        _opened.append(str(args[0]))


sys.addaudithook(_hook)  # audit hooks cannot be removed: this one records only while armed


@pytest.fixture
def opened() -> Iterator[list[str]]:
    global _opened  # noqa: PLW0603  # the process-wide audit hook reads it
    _opened = []
    try:
        yield _opened
    finally:
        _opened = None


def test_kiosk_is_stable_and_changes_with_the_board(tmp_path: Path) -> None:
    root = write_identifiers(tmp_path / "a")
    first = kiosk_fingerprint("salt", root)
    assert first == kiosk_fingerprint("salt", root)  # a reboot reads the same files
    assert first.slots == ("serial", "machine", "model") and len(first.value) == 64
    assert kiosk_fingerprint("other-salt", root).value != first.value
    board = write_identifiers(tmp_path / "b", serial="SN-NEW-BOARD")
    assert kiosk_fingerprint("salt", board).value != first.value
    for raw in (SERIAL, MACHINE, MODEL):
        assert raw not in repr(first)


def test_kiosk_fallback_order_and_missing_sources(tmp_path: Path) -> None:
    vm = write_identifiers(tmp_path / "vm", serial=None)  # a VM without a DMI serial
    fp = kiosk_fingerprint("salt", vm)
    assert fp.slots == ("machine", "model")
    arm = write_identifiers(tmp_path / "arm", device_tree=True)  # device-tree when there is no DMI
    assert kiosk_fingerprint("salt", arm).slots == ("serial", "machine", "model")
    placeholder = write_identifiers(tmp_path / "oem", serial="To Be Filled By O.E.M.")
    assert kiosk_fingerprint("salt", placeholder).slots == ("machine", "model")
    with pytest.raises(FingerprintError, match="no device identifier"):
        kiosk_fingerprint("salt", tmp_path / "empty")


@pytest.mark.asyncio
async def test_app_mode_opens_no_identifier_file(
    tmp_path: Path, store: Store, clock: ManualClock, vendor: Ed25519PrivateKey, opened: list[str]
) -> None:
    root = write_identifiers(tmp_path / "root")
    cfg = section(tmp_path, vendor, deployment="app", root=root)
    opened.clear()  # writing the files above was the test's own doing
    async with LicenceManager(cfg, store=store, bus=EventBus(), clock=clock) as m:
        first = m.fingerprint
        await m.check()
    assert first.mode == "app" and first.kind == "install"
    hits = [p for p in opened if any(p.endswith(rel) for rel in IDENTIFIER_FILES) or str(root) in p]
    assert hits == [], hits
    assert any(p.endswith("device.licence") for p in opened)  # the hook does see this manager's opens
    # The install id is kept in the encrypted store: stable across restarts.
    async with LicenceManager(cfg, store=store, bus=EventBus(), clock=clock) as again:
        assert again.fingerprint == first


def _store_files(folder: Path) -> list[str]:
    return [p.read_bytes().decode("latin-1") for p in sorted(folder.iterdir()) if ".db" in p.name]


@pytest.mark.asyncio
async def test_kiosk_mode_never_logs_or_stores_a_raw_identifier(
    tmp_path: Path,
    db_path: Path,
    store: Store,
    clock: ManualClock,
    vendor: Ed25519PrivateKey,
    capsys: pytest.CaptureFixture[str],
    opened: list[str],
) -> None:
    from facegate.policy.licence import issue_test_licence, status_payload  # noqa: PLC0415

    write_identifiers(tmp_path / "root")
    async with LicenceManager(section(tmp_path, vendor), store=store, bus=EventBus(), clock=clock) as m:
        assert any(p.endswith("etc/machine-id") for p in opened)  # kiosk mode does read them
        assert not [p for p in opened if "os-release" in p or p.endswith(("/proc/version", "/etc/issue"))]
        await m.install(issue_test_licence(vendor, m.fingerprint.value, now=clock.wall()))
        assert m.status.state is LicenceState.VALID
        payload = repr(status_payload(m.status, clock.wall()))
    await store.checkpoint()
    out = capsys.readouterr()
    haystacks = [out.out, out.err, payload, (tmp_path / "device.licence").read_text()]
    haystacks += _store_files(tmp_path)
    for raw in (SERIAL, MACHINE, MODEL):
        for text in haystacks:
            assert raw not in text
