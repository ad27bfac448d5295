"""Ready-to-serve benchmark of a REAL ``facegate run`` with a real gallery.

``python -m facegate.runtime.app.startup_bench --shapes 100000x1,20000x5 [--json]``
(also ``facegate bench --startup ...``).

For each shape (subjects x templates per subject) it builds, once, in a work
directory: an encrypted store with that gallery (random unit templates of the
device's recogniser model), an active biometric consent and an age record per
subject (bulk SQL: the provisioning path itself is not what is measured), and
a firmware config (simulated camera and GPIO, an external Mosquitto on a free
port). Then it starts ``python -m facegate.runtime.app.cli run -c device.toml`` as
a child process with ``NOTIFY_SOCKET`` set and measures:

* ``ready_s``: process start to the ``READY=1`` datagram (systemd's view: the
  models are loaded, the gallery is decrypted into the matcher, the policy's
  start-up consent check is done, every service runs);
* ``peak_rss_ready_mb``: the child's VmHWM at READY;
* ``peak_rss_running_mb``: VmHWM after ``--run-s`` seconds of serving.

The child is stopped with SIGTERM. Numbers are wall-clock on this machine:
they print next to the CPU model and the load average.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from ...storage.crypto import new_key
from ...storage.kek import KekSource, KekSourceKind, encode_key
from ..machine import cpu_label

ENV = "FACEGATE_STARTUP_BENCH_KEK"
_CHUNK = 2000


def _model_id() -> tuple[str, int]:
    from ...drivers.models.loader import load_models  # noqa: PLC0415  # heavy import only here

    models = load_models()
    return models.model_id, models.embedder.dim


async def _build(path: Path, subjects: int, per: int, model_id: str, dim: int) -> None:
    from ...storage import Store  # noqa: PLC0415

    rng = np.random.default_rng(subjects * 31 + per)
    source = KekSource(kind=KekSourceKind.ENV, env=ENV)
    async with Store(path, source, max_templates_per_subject=max(per, 1)) as st:
        for first in range(0, subjects, _CHUNK):
            n = min(_CHUNK, subjects - first)
            vecs = rng.standard_normal((n, per, dim)).astype(np.float32)
            vecs /= np.linalg.norm(vecs, axis=2, keepdims=True)
            sids = [f"p{first + i:07d}" for i in range(n)]
            await st.gallery.enroll_many(list(zip(sids, vecs, strict=True)), model_id)
            async with st.transaction() as tx:
                now = tx.at
                await tx.executemany(
                    "INSERT INTO consents(consent_id, subject_id, kind, purpose, state, granted_at, "
                    "method, notice_version, actor, evidence_digest, expires_at, changed_at) "
                    "VALUES (?, ?, 'biometric', 'access_control', 'active', ?, 'paper', '1', "
                    "'bench', 'sha256:bench-evidence', NULL, ?)",
                    [(f"c-{s}", s, now, now) for s in sids],
                )
                await tx.executemany(
                    "INSERT INTO policy_age(subject_id, birth_date, age_band, recorded_at, actor) "
                    "VALUES (?, '1980-01-01', NULL, ?, 'bench')",
                    [(s, now) for s in sids],
                )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _build_of(model_id: str) -> str:
    """The recogniser build of ``model_id`` (the int8 build's id ends in ``:int8r<n>-<hash>``)."""
    return "int8" if ":int8" in model_id else "fp32"


def _config(work: Path, db: Path, port: int, cache: Path, model_id: str) -> Path:
    # The build is set explicitly: with "auto" the child would pin its own build in the bench's
    # cache, and a gallery of the other build's model id would load no template at all.
    cfg = work / "device.toml"
    cfg.write_text(
        "[device]\nid = \"bench-gate\"\n"
        f"[mqtt]\nbroker = \"external\"\nhost = \"127.0.0.1\"\nport = {port}\n"
        "[logging]\nlevel = \"warning\"\n"
        "[lifecycle]\nwatchdog = true\n"
        "[camera]\ndriver = \"simulated\"\n"
        "[gpio]\ndriver = \"simulated\"\n"
        f"[storage]\npath = \"{db}\"\nkek_source = \"env\"\nkek_env = \"{ENV}\"\n"
        f"[recognition.models]\ncache_dir = \"{cache}\"\n"
        f"recognizer_precision = \"{_build_of(model_id)}\"\n"
    )
    return cfg


def _vm_hwm_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _run_device(cfg: Path, run_s: float, timeout_s: float) -> dict[str, float]:
    sock_path = cfg.parent / "notify.sock"
    sock_path.unlink(missing_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    sock.settimeout(0.05)
    env = {**os.environ, "NOTIFY_SOCKET": str(sock_path), "WATCHDOG_USEC": "10000000"}
    t0 = time.perf_counter()
    proc = subprocess.Popen(  # noqa: S603  # this interpreter running facegate's own CLI
        [sys.executable, "-m", "facegate.runtime.app.cli", "run", "-c", str(cfg)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        ready = None
        while ready is None:
            if time.perf_counter() - t0 > timeout_s:
                raise TimeoutError(f"no READY=1 within {timeout_s} s")
            if proc.poll() is not None:
                err = proc.stderr.read().decode(errors="replace")[-2000:] if proc.stderr else ""
                raise RuntimeError(f"facegate run exited with {proc.returncode}: {err}")
            try:
                msg = sock.recv(4096).decode()
            except TimeoutError:
                continue
            if "READY=1" in msg.split("\n"):
                ready = time.perf_counter() - t0
        at_ready = _vm_hwm_mb(proc.pid)
        time.sleep(run_s)
        running = _vm_hwm_mb(proc.pid)
        return {"ready_s": round(ready, 3), "peak_rss_ready_mb": round(at_ready, 1),
                "peak_rss_running_mb": round(running, 1)}
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        sock.close()


def bench_startup(shapes: list[tuple[int, int]], *, work: Path | None = None, run_s: float = 5.0,
                  repeats: int = 1) -> dict[str, Any]:
    """Build each gallery once (kept under ``work``), then time ``repeats`` real starts."""
    root = work or Path(tempfile.mkdtemp(prefix="facegate-startup-"))
    root.mkdir(parents=True, exist_ok=True)
    kek_file = root / "bench.kek"  # built galleries are reused: keep their (throw-away) KEK
    if not kek_file.exists():
        kek_file.write_text(encode_key(new_key()))
        kek_file.chmod(0o600)
    os.environ[ENV] = kek_file.read_text().strip()
    model_id, dim = _model_id()
    mosquitto = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    port = _free_port()
    broker = subprocess.Popen(  # noqa: S603  # the system's Mosquitto on a free local port
        [mosquitto, "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    out: dict[str, Any] = {"cpu": cpu_label(), "model_id": model_id, "shapes": []}
    try:
        for subjects, per in shapes:
            # One gallery per build: templates of one model id are never loaded by the other.
            shape_dir = root / f"{subjects}x{per}-{_build_of(model_id)}"
            shape_dir.mkdir(parents=True, exist_ok=True)
            db = shape_dir / "gallery.db"
            built = 0.0
            if not db.exists():
                t = time.perf_counter()
                asyncio.run(_build(db, subjects, per, model_id, dim))
                built = time.perf_counter() - t
            cfg = _config(shape_dir, db, port, root / "model-cache", model_id)
            if not (root / "model-cache").exists():
                # First boot converts the models into the cache once; not a start-up figure.
                _run_device(cfg, 0.0, timeout_s=900)
            runs = [_run_device(cfg, run_s, timeout_s=600) for _ in range(repeats)]
            best = min(runs, key=lambda r: r["ready_s"])
            out["shapes"].append({
                "subjects": subjects, "templates_per_subject": per, "templates": subjects * per,
                "build_s": round(built, 1), "runs": runs, **best,
                "load_avg_after": [round(x, 2) for x in os.getloadavg()],
            })
    finally:
        broker.terminate()
        broker.wait(timeout=10)
    return out


def parse_shapes(text: str) -> list[tuple[int, int]]:
    """``100000x1,20000x5`` -> [(100000, 1), (20000, 5)]."""
    shapes = []
    for part in text.split(","):
        s, _, t = part.strip().lower().partition("x")
        shapes.append((int(s), int(t or 1)))
    return shapes


def print_report(res: dict[str, Any]) -> None:
    cpu = res["cpu"]
    print(f"CPU: {cpu['model']} ({cpu['cores']} cores; {' '.join(cpu['features'])}); "
          f"load average {cpu['load_avg']}")
    for s in res["shapes"]:
        print(f"facegate run, {s['subjects']} subjects x {s['templates_per_subject']}: ready "
              f"{s['ready_s']:.2f} s, peak RSS {s['peak_rss_ready_mb']:.0f} MB at ready, "
              f"{s['peak_rss_running_mb']:.0f} MB running (load {s['load_avg_after']})")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--shapes", default="100000x1,20000x5")
    p.add_argument("--work", type=Path, default=None, help="keep built galleries here")
    p.add_argument("--run-s", type=float, default=5.0)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--json", action="store_true")
    a = p.parse_args(argv)
    from ..logs import configure_logging  # noqa: PLC0415  # stdout carries only the report

    configure_logging(device_id="bench", level="warning", stream=sys.stderr)
    res = bench_startup(parse_shapes(a.shapes), work=a.work, run_s=a.run_s, repeats=a.repeats)
    if a.json:
        print(json.dumps(res))
    else:
        print_report(res)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
