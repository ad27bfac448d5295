"""Anti-passback state survives a restart (real SQLite file, migration 3), timeout still applied."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest
from facegate.handlers.access import AntiPassback, Authoriser, store_lookup
from facegate.handlers.access.journal import PassageJournal
from facegate.policy import Policy
from facegate.runtime.clock import ManualClock
from facegate.runtime.config.access import AccessSection
from facegate.runtime.events import Decision
from facegate.storage import Store
from facegate.storage.kek import KekSource
from facegate.storage.migrations import SCHEMA_VERSION

from .test_access_rights import enrol, granted

TIMEOUT = 3600.0
ENTRY = AccessSection(enabled=True, direction="entry", anti_passback="hard", anti_passback_timeout_s=TIMEOUT)


async def boot(db_path: Path, kek: KekSource, clock: ManualClock) -> tuple[Store, PassageJournal, Authoriser]:
    """One device start: store, anti-passback with its journal (restored on open), authoriser."""
    store = await Store(db_path, kek, clock=clock).__aenter__()
    passback = AntiPassback("hard", TIMEOUT, clock)
    journal = PassageJournal(passback, store, clock)
    passback.journal = journal
    await journal.__aenter__()
    return store, journal, Authoriser(ENTRY, store_lookup(store), passback=passback)


async def shutdown(store: Store, journal: PassageJournal, *, graceful: bool) -> None:
    if graceful:
        await journal.__aexit__(None, None, None)
    await store.__aexit__(None, None, None)


@pytest.mark.asyncio
async def test_passback_state_survives_a_restart_and_still_times_out(db_path: Path, kek: KekSource) -> None:
    clock = ManualClock(start_wall=1_767_225_600.0)
    store, journal, auth = await boot(db_path, kek, clock)
    at = clock.wall()
    assert (await auth.authorise(granted("A1", at))).decision is Decision.GRANTED
    assert (await auth.authorise(granted("B2", at))).decision is Decision.GRANTED
    task = asyncio.create_task(journal.run(), name="access.passback_journal")
    async with asyncio.timeout(30):
        while journal.written < 2:  # noqa: ASYNC110  # polling the service's write counter
            await asyncio.sleep(0.01)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await shutdown(store, journal, graceful=False)  # no flush: what run() wrote is what survives

    with sqlite3.connect(db_path) as con:
        assert con.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION >= 3
        rows = con.execute("SELECT subject_id, direction FROM passages ORDER BY subject_id").fetchall()
    assert rows == [("A1", "entry"), ("B2", "entry")]  # pseudonymous ids and a direction only

    # A new process 50 minutes later (monotonic time restarts): still a repeated entry.
    clock2 = ManualClock(start_monotonic=5.0, start_wall=at + 3000)
    store, journal, auth = await boot(db_path, kek, clock2)
    assert journal.restored == 2
    out = await auth.authorise(granted("A1", clock2.wall()))
    assert (out.decision, out.reason) == (Decision.DENIED, "anti_passback")
    # The restored passage keeps its age: 10 minutes later its hour is over.
    await clock2.advance(601)
    assert (await auth.authorise(granted("B2", clock2.wall()))).decision is Decision.GRANTED
    await shutdown(store, journal, graceful=True)

    # A restart after the timeout restores nothing (and the pruned rows are gone).
    clock3 = ManualClock(start_monotonic=5.0, start_wall=at + 2 * TIMEOUT + 10)
    store, journal, auth = await boot(db_path, kek, clock3)
    assert journal.restored == 0
    assert (await auth.authorise(granted("A1", clock3.wall()))).decision is Decision.GRANTED
    await shutdown(store, journal, graceful=True)
    with sqlite3.connect(db_path) as con:
        assert con.execute("SELECT subject_id FROM passages").fetchall() == [("A1",)]


@pytest.mark.asyncio
async def test_erasing_a_subject_forgets_its_passage(
    policy: Policy, db_path: Path, clock: ManualClock
) -> None:
    await enrol(policy, "E1", 7)
    await enrol(policy, "E2", 8)
    passback = AntiPassback("hard", TIMEOUT, clock)
    journal = PassageJournal(passback, policy.store, clock)
    passback.journal = journal
    passback.record("E1", "entry")
    passback.record("E2", "entry")
    await journal.flush()
    await policy.store.gallery.remove("E1", actor="op")
    with sqlite3.connect(db_path) as con:
        assert con.execute("SELECT subject_id FROM passages").fetchall() == [("E2",)]
