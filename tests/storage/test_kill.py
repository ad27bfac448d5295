"""SIGKILL during bulk enrolment, repeatedly: nothing reported committed is lost or corrupt."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sqlite3
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from facegate.storage import KekSource, Store

from .conftest import KEK_ENV, RecordingSink

CHILD = r"""
import asyncio, sys, zlib
import numpy as np
import structlog, logging
structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))
from pathlib import Path
from facegate.storage import KekSource, KekSourceKind, Store

def vec(sid):
    rng = np.random.default_rng(zlib.crc32(sid.encode()))
    return rng.standard_normal((2, 128)).astype(np.float32)

async def main():
    src = KekSource(kind=KekSourceKind.ENV, env=sys.argv[2])
    prefix = sys.argv[3]
    async with Store(Path(sys.argv[1]), src) as st:
        print("READY", flush=True)
        i = 0
        while True:
            batch = [(f"{prefix}-{i + j}", vec(f"{prefix}-{i + j}")) for j in range(4)]
            if i % 3 == 0:
                for sid, e in batch:  # single enrolments too
                    await st.gallery.enroll(sid, e, "m")
            else:
                await st.gallery.enroll_many(batch, "m")
            print("C " + " ".join(s for s, _ in batch), flush=True)
            i += 4

asyncio.run(main())
"""


def _vec(sid: str) -> np.ndarray:
    rng = np.random.default_rng(zlib.crc32(sid.encode()))
    return rng.standard_normal((2, 128)).astype(np.float32)


def _integrity_ok(path: Path) -> None:
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)], path
    finally:
        conn.close()


async def _verify(db: Path, kek: KekSource, committed: set[str]) -> int:
    async with Store(db, kek, integrity="full") as st:
        sink = RecordingSink()
        report = await st.gallery.load_all(sink)
        assert not report.failures and report.unavailable == 0
        got: dict[str, list[np.ndarray]] = {}
        for (sid, _), e in sink.rows.items():
            got.setdefault(sid, []).append(e)
        missing = committed - got.keys()
        assert not missing, f"{len(missing)} committed subject(s) lost, e.g. {sorted(missing)[:3]}"
        for sid in committed:
            assert len(got[sid]) == 2
            np.testing.assert_array_equal(np.stack(got[sid]), _vec(sid))
        assert (await st.verify_audit()).ok
        return report.templates


@pytest.mark.timeout(240)
@pytest.mark.asyncio
async def test_sigkill_during_bulk_enrolment_50_times(db_path: Path, kek: KekSource) -> None:
    rng = random.Random(1234)
    committed: set[str] = set()
    kills = int(os.environ.get("FACEGATE_KILL_ROUNDS", "50"))
    env = {**os.environ}
    for round_no in range(kills):
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            CHILD,
            str(db_path),
            KEK_ENV,
            f"r{round_no}",
            stdout=subprocess.PIPE,
            env=env,
        )
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        assert line.strip() == b"READY", line
        await asyncio.sleep(rng.uniform(0.0, 0.25))
        os.kill(proc.pid, signal.SIGKILL)
        rest = await proc.stdout.read()
        await proc.wait()
        assert proc.returncode == -signal.SIGKILL
        for raw in rest.decode().splitlines():
            if raw.startswith("C "):
                committed.update(raw[2:].split())
        _integrity_ok(db_path)
        _integrity_ok(db_path.with_name("gallery.keys.db"))
        templates = await _verify(db_path, kek, committed)
        assert templates >= 2 * len(committed)
    assert len(committed) > kills  # the child really got work done between kills
