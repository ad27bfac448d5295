"""Display names in event/access: only with ``events.include_names``, resolved from the gallery.

A real encrypted store and policy (consent, enrolment with a display name,
rectification, erasure), the real durable pipeline as the device wires it
(:func:`facegate.runtime.app.mqtt_parts.build_link_parts` with the store) and a real Mosquitto,
observed by an outside subscriber.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest
import pytest_asyncio
from facegate.handlers.commands import first_error
from facegate.handlers.reporting.names import SubjectNames
from facegate.policy import AgeBand, ConsentKind, ConsentMethod, Policy
from facegate.runtime.app.mqtt_parts import LinkParts, build_link_parts, new_link
from facegate.runtime.bus import EventBus
from facegate.runtime.clock import ManualClock, SystemClock
from facegate.runtime.config.privacy import PrivacySection
from facegate.runtime.events import PrivacyEvent, PrivacyKind
from facegate.runtime.health import HealthMonitor
from facegate.storage import Store
from structlog.testing import capture_logs

from ..fixtures.brokers import MosquittoBroker
from .durable_util import access, kek_source, open_store
from .util import Observer, load, observe, until

pytestmark = pytest.mark.mosquitto
ACCESS = "facegate/v1/gate-1/event/access"
NAME, NEW_NAME = "Ada Lovelace", "Ada King"
EVIDENCE = "sha256:" + hashlib.sha256(b"signed consent form").hexdigest()


@dataclass
class Rig:
    bus: EventBus
    store: Store
    policy: Policy
    parts: LinkParts


@pytest_asyncio.fixture(params=[True, False], ids=["names_on", "names_off"])
async def rig(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    mosquitto: MosquittoBroker,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[Rig]:
    clock, bus = SystemClock(), EventBus()
    loaded = load(tmp_path, mosquitto, protocol="5")
    cfg = loaded.config
    loaded = replace(loaded, config=replace(cfg, events=replace(cfg.events, include_names=request.param)))
    kek = kek_source(monkeypatch)
    async with open_store(tmp_path / "dev.db", kek, clock=clock, publish=bus.publish) as store:
        policy = await Policy(store, PrivacySection(), clock=clock, device_id="gate-1").open()
        await _enrol(policy, "emp-7", NAME)
        await _enrol(policy, "emp-8", None)
        link, metrics = new_link(loaded, clock=clock, bus=bus, health=HealthMonitor(clock=clock, bus=bus))
        parts = await build_link_parts(
            loaded,
            link,
            metrics,
            clock=clock,
            bus=bus,
            store=store,
        )
        assert parts.events is not None
        link, events = parts.link, parts.events
        async with link, asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(events.run(), name="test.events")]
            if parts.names is not None:
                tasks.append(tg.create_task(parts.names.run(), name="test.names"))
            await asyncio.wait_for(events.wait_subscribed(), 5)
            await asyncio.wait_for(link.wait_connected(), 10)
            try:
                yield Rig(bus, store, policy, parts)
            finally:
                for task in tasks:
                    task.cancel()


async def _enrol(policy: Policy, subject_id: str, name: str | None) -> None:
    await policy.consents.record_age(subject_id, birth_date=None, age_band=AgeBand("18_plus"), actor="kiosk")
    await policy.consents.grant(
        subject_id=subject_id,
        kind=ConsentKind.BIOMETRIC,
        method=ConsentMethod.KIOSK,
        evidence_digest=EVIDENCE,
        actor="kiosk",
        activate=True,
    )
    vec = np.random.default_rng(7).standard_normal(128).astype(np.float32)
    await policy.enrol_subject(
        subject_id, vec / np.linalg.norm(vec), "sface-2021dec", actor="kiosk", display_name=name
    )


async def _decision(rig: Rig, obs: Observer, n: int, subject_id: str | None) -> dict[str, object]:
    rig.bus.publish(replace(access(n), subject_id=subject_id))
    seen = await obs.wait_for(lambda s: s.json().get("event_id") == f"ev-{n:06d}", within=15)
    body = seen.json()
    assert first_error("event_access", body) is None, first_error("event_access", body)
    return body


@pytest.mark.asyncio
async def test_access_events_carry_names_only_when_configured(
    rig: Rig, mosquitto: MosquittoBroker
) -> None:
    on = rig.parts.names is not None
    with capture_logs() as logs:
        async with observe(mosquitto, ACCESS, client_id="names-obs") as obs:
            named = await _decision(rig, obs, 1, "emp-7")
            nameless = await _decision(rig, obs, 2, "emp-8")  # enrolled without a display name
            unknown = await _decision(rig, obs, 3, None)  # an unknown face names nobody
            again = await _decision(rig, obs, 4, "emp-7")

            # Rectification reaches the cache through the policy's PrivacyEvent (TTL is 60 s).
            await rig.policy.rectify("emp-7", actor="admin", display_name=NEW_NAME)
            rectified = await _decision(rig, obs, 5, "emp-7")

            # Erasure: the subject (and its key) are gone, so is its name.
            await rig.policy.erase_subject("emp-7", actor="admin")
            erased = await _decision(rig, obs, 6, "emp-7")
        payloads = [m.payload.decode() for m in obs.messages]

    if on:
        assert named["name"] == NAME and again["name"] == NAME
        assert rectified["name"] == NEW_NAME
        assert rig.parts.names is not None and rig.parts.names.lookups <= 4  # cached, not per event
    for body in ([named, again, rectified] if not on else []) + [nameless, unknown, erased]:
        assert "name" not in body, body
    if not on:
        assert not any("Ada" in p for p in payloads)
        assert not any('"name"' in json.dumps(_top_level(p)) for p in payloads)
    # Never in a log line, whatever the setting.
    assert not any("Ada" in repr(entry) for entry in logs), [e for e in logs if "Ada" in repr(e)]


def _top_level(payload: str) -> list[str]:
    return list(json.loads(payload))  # stage entries have a check's "name"; top-level keys do not


class _Gallery:
    """The lowest seam for the cache's own contract: counts reads, returns a record."""

    def __init__(self) -> None:
        self.names = {"s-1": "One"}
        self.reads = 0

    async def get(self, subject_id: str) -> _Rec:
        self.reads += 1
        return _Rec(self.names.get(subject_id))


@dataclass
class _Rec:
    display_name: str | None


@pytest.mark.asyncio
async def test_name_cache_expires_and_invalidates_on_privacy_events() -> None:
    clock, bus, gallery = ManualClock(), EventBus(), _Gallery()
    names = SubjectNames(gallery, clock=clock, bus=bus, ttl_s=30)
    assert await names.lookup("s-1") == "One"
    assert await names.lookup("s-1") == "One" and gallery.reads == 1
    gallery.names["s-1"] = "Uno"
    await clock.advance(31)  # TTL: a change made by another process shows up eventually
    assert await names.lookup("s-1") == "Uno" and gallery.reads == 2
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(names.run(), name="test.names")
        await asyncio.sleep(0)  # subscribed
        gallery.names["s-1"] = "Eins"
        bus.publish(PrivacyEvent(at=0.0, kind=PrivacyKind.RECTIFICATION, subject_id="s-1"))
        await until(lambda: names.get("s-1") is None)
        assert await names.lookup("s-1") == "Eins"
        bus.publish(PrivacyEvent(at=0.0, kind=PrivacyKind.TEARDOWN))
        await until(lambda: names.get("s-1") is None)
        task.cancel()
