"""Benchmark: restrict-to-unmatchable, and tamper input to a shredded key vault.

``python -m facegate.policy.rights_bench [--subjects N] [--rounds 20] [--tamper-rounds 5]``

1. Enrols N consenting subjects into a fresh encrypted store (real SQLite,
   env KEK) and the real 1:N matcher, then restricts ``rounds`` random
   subjects: prints the time from the call to the matcher no longer holding
   the subject, and until the call returned (restriction committed, audited,
   receipted).
2. ``tamper-rounds`` times: a fresh store with N/10 subjects, the simulated
   GPIO (the lowest seam), the real bus, :class:`TamperInput` and
   :class:`IncidentResponder` configured ``shred_kek``; drives the tamper line
   and prints the time from the edge to the key vault being shredded (the
   teardown returned: every DEK and the KEK check value deleted, data
   deleted, file vacuumed) and to the incident being persisted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from collections.abc import Sequence
from datetime import date
from pathlib import Path

import numpy as np

from ..drivers.gpio import GpioInputWatcher, SimulatedGpio
from ..handlers.recognition.matcher import Matcher
from ..runtime.bus import EventBus
from ..runtime.clock import SystemClock
from ..runtime.config.privacy import IncidentRule, PrivacySection
from ..runtime.logs import configure_logging
from ..storage import KekSource, KekSourceKind, Store
from ..storage.crypto import new_key
from ..storage.kek import encode_key
from ..storage.keys import count_subject_keys
from . import restriction
from .bench import DIM, MODEL, TimedSink, _pct
from .consent_model import ConsentKind, ConsentMethod
from .core import EnrolItem, Policy
from .incidents import IncidentResponder, TamperInput
from .teardown import destroy

_ENV = "FACEGATE_RIGHTS_BENCH_KEK"
TAMPER_LINE = 5


async def _fill(policy: Policy, subjects: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    ids = [f"b{i:07d}" for i in range(subjects)]
    for sid in ids:
        await policy.consents.record_age(sid, birth_date=date(1980, 1, 1), actor="bench")
        await policy.consents.grant(
            subject_id=sid,
            kind=ConsentKind.BIOMETRIC,
            method=ConsentMethod.API,
            evidence_digest="sha256:bench-evidence",
            actor="bench",
            activate=True,
        )
    for start in range(0, len(ids), 500):
        items = []
        for sid in ids[start : start + 500]:
            x = rng.standard_normal((2, DIM)).astype(np.float32)
            items.append(EnrolItem(sid, x / np.linalg.norm(x, axis=1, keepdims=True)))
        await policy.enrol_many(items, MODEL, actor="bench")
    return ids


def _kek() -> KekSource:
    os.environ[_ENV] = encode_key(new_key())
    return KekSource(kind=KekSourceKind.ENV, env=_ENV)


async def restrict_bench(subjects: int, rounds: int, directory: Path) -> tuple[list[float], list[float]]:
    clock = SystemClock()
    sink = TimedSink(Matcher(MODEL, DIM, threads=1))
    async with Store(directory / "restrict.db", _kek(), clock=clock) as store:
        policy = await Policy(store, PrivacySection(), clock=clock, sink=sink).open()
        ids = await _fill(policy, subjects, 7)
        unmatchable, returned = [], []
        for picked in np.random.default_rng(3).choice(ids, size=min(rounds, len(ids)), replace=False):
            sid = str(picked)
            t_call = time.perf_counter()
            await restriction.restrict(policy, sid, actor="bench")
            returned.append(time.perf_counter() - t_call)
            assert not sink.matcher.has_subject(sid)
            unmatchable.append(sink.removed_at[sid] - t_call)
    return unmatchable, returned


async def tamper_bench(subjects: int, rounds: int, directory: Path) -> tuple[list[float], list[float]]:
    runs = [await _tamper_round(subjects, directory / f"tamper{r}.db", r) for r in range(rounds)]
    return [a for a, _ in runs], [b for _, b in runs]


async def _tamper_round(subjects: int, path: Path, seed: int) -> tuple[float, float]:
    clock, bus, kek = SystemClock(), EventBus(), _kek()
    async with Store(path, kek, clock=clock) as store:
        policy = await Policy(
            store, PrivacySection(), clock=clock, sink=Matcher(MODEL, DIM, threads=1)
        ).open()
        await _fill(policy, subjects, seed)
        gpio = SimulatedGpio(outputs={17: False}, inputs=[TAMPER_LINE], clock=clock)
        done: dict[str, float] = {}

        async def shred(incident_id: str) -> None:
            await destroy(policy, actor=f"incident:{incident_id}", kek=kek)
            done["shredded"] = time.perf_counter()

        rules = {"enclosure_open": IncidentRule(severity="critical", response="shred_kek")}
        responder = IncidentResponder(policy, bus, clock, rules=rules, shred=shred)
        async with gpio:
            tamper = TamperInput(bus, clock, gpio, line=TAMPER_LINE, open_high=True)
            services = (GpioInputWatcher(gpio, bus, clock), tamper, responder)
            tasks = [asyncio.create_task(s.run(), name=s.name) for s in services]
            await asyncio.sleep(0.05)  # subscriptions in place
            t_edge = time.perf_counter()
            gpio.drive_input(TAMPER_LINE, True)
            while not responder.handled:  # noqa: ASYNC110  # a benchmark polls its own condition
                await asyncio.sleep(0.0005)
            t_persisted = time.perf_counter()
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        assert await count_subject_keys(store.db) == 0, "vault not shredded"
    return done["shredded"] - t_edge, t_persisted - t_edge


def _line(name: str, values: list[float]) -> str:
    ms = [v * 1e3 for v in values]
    return (
        f"  {name}: median {statistics.median(ms):.3f} ms, p95 {_pct(ms, 0.95):.3f} ms, max {max(ms):.3f} ms"
    )


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m facegate.policy.rights_bench", description=__doc__.splitlines()[0]
    )
    ap.add_argument("--subjects", type=int, default=1000, help="enrolled subjects (default 1000)")
    ap.add_argument("--rounds", type=int, default=20, help="restrictions measured")
    ap.add_argument("--tamper-rounds", type=int, default=5, help="tamper -> shred runs (fresh store each)")
    args = ap.parse_args(argv)
    configure_logging(device_id="bench", level="error")
    with tempfile.TemporaryDirectory(prefix="facegate-rights-bench-") as tmp:
        unmatchable, returned = asyncio.run(restrict_bench(args.subjects, args.rounds, Path(tmp)))
        shredded, persisted = asyncio.run(
            tamper_bench(max(1, args.subjects // 10), args.tamper_rounds, Path(tmp))
        )
    print(f"restrict-to-unmatchable over {args.subjects} subjects / {2 * args.subjects} templates:")
    print(_line("unmatchable", unmatchable) + " (target: before the call returns, <= 1000 ms)")
    print(_line("call returned (committed, audited, receipted)", returned))
    small = max(1, args.subjects // 10)
    print(f"tamper input -> shredded key vault ({small} subjects, {args.tamper_rounds} runs):")
    print(_line("vault shredded (teardown returned)", shredded))
    print(_line("incident persisted and published", persisted))
    return 0 if max(unmatchable) <= 1.0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
