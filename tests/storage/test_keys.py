"""KEK sources, wrong keys, key files, passphrases, and crash-safe rotation."""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from facegate.runtime.app.cli import main as cli_main
from facegate.storage import KekSource, KekSourceKind, Store, init_kek, rotate_kek
from facegate.storage.crypto import new_key
from facegate.storage.errors import KekSourceError, KeyFilePermissionError, WrongKekError
from facegate.storage.kek import encode_key, write_key_file

from .conftest import KEK_ENV, RecordingSink, embeddings


def _digest(*paths: Path) -> str:
    h = hashlib.sha256()
    for p in paths:
        for suffix in ("", "-wal"):
            f = Path(f"{p}{suffix}")
            h.update(f.read_bytes() if f.exists() else b"-")
    return h.hexdigest()


@pytest.mark.asyncio
async def test_wrong_kek_is_a_clear_error_and_changes_nothing(
    db_path: Path, kek: KekSource, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with Store(db_path, kek) as st:
        await st.gallery.enroll("s1", embeddings(2), "m")
        vault = st.db.vault_path
    before = _digest(db_path, vault)
    monkeypatch.setenv(KEK_ENV, encode_key(new_key()))
    with pytest.raises(WrongKekError, match=rf"environment variable {KEK_ENV}.*no data was changed"):
        async with Store(db_path, kek):
            pass
    assert _digest(db_path, vault) == before


@pytest.mark.asyncio
async def test_key_file_permissions_and_format(tmp_path: Path, db_path: Path) -> None:
    key_file = tmp_path / "kek"
    write_key_file(key_file, new_key())
    assert key_file.stat().st_mode & 0o777 == 0o600
    source = KekSource(kind=KekSourceKind.FILE, file=key_file)
    async with Store(db_path, source) as st:
        await st.gallery.enroll("s1", embeddings(1), "m")
    key_file.chmod(0o644)
    with pytest.raises(KeyFilePermissionError, match=r"0644.*0600"):
        async with Store(db_path, source):
            pass
    key_file.chmod(0o600)
    key_file.write_text("not a key\n")
    with pytest.raises(KekSourceError, match=f"key file {key_file}"):
        async with Store(db_path, source):
            pass
    with pytest.raises(KekSourceError, match="does not exist"):
        async with Store(db_path, KekSource(kind=KekSourceKind.FILE, file=tmp_path / "nope")):
            pass


@pytest.mark.asyncio
async def test_passphrase_and_credential_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "p.db"
    good = KekSource(kind=KekSourceKind.PASSPHRASE, passphrase="correct horse", scrypt_n=1 << 12)
    async with Store(db, good) as st:
        await st.gallery.enroll("s1", embeddings(1), "m")
    with pytest.raises(WrongKekError, match="passphrase"):
        async with Store(db, KekSource(kind=KekSourceKind.PASSPHRASE, passphrase="wrong", scrypt_n=1 << 12)):
            pass
    async with Store(db, good) as st:
        assert (await st.gallery.get("s1", include_embeddings=True)).embeddings is not None

    cred_dir = tmp_path / "creds"
    cred_dir.mkdir()
    write_key_file(cred_dir / "facegate-kek", new_key())
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(cred_dir))
    cred = KekSource(kind=KekSourceKind.CREDENTIAL, credential="facegate-kek")
    async with Store(tmp_path / "c.db", cred) as st:
        await st.gallery.enroll("s1", embeddings(1), "m")
    monkeypatch.delenv("CREDENTIALS_DIRECTORY")
    with pytest.raises(KekSourceError, match="CREDENTIALS_DIRECTORY"):
        async with Store(tmp_path / "c.db", cred):
            pass


def _config(tmp_path: Path) -> Path:
    cfg = tmp_path / "device.toml"
    cfg.write_text(
        textwrap.dedent(
            f"""
            [device]
            id = "gate-1"
            [storage]
            path = "{tmp_path / "g.db"}"
            kek_source = "file"
            kek_file = "{tmp_path / "kek"}"
            """
        )
    )
    return cfg


def test_keys_init_check_rotate_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = _config(tmp_path)
    assert cli_main(["keys", "init", "-c", str(cfg)]) == 0
    assert (tmp_path / "kek").stat().st_mode & 0o777 == 0o600
    assert cli_main(["keys", "init", "-c", str(cfg)]) == 1  # never overwrites a key
    source = KekSource(kind=KekSourceKind.FILE, file=tmp_path / "kek")

    async def enrol() -> None:
        async with Store(tmp_path / "g.db", source) as st:
            await st.gallery.enroll_many([(f"s{i}", embeddings(2, seed=i)) for i in range(20)], "m")

    asyncio.run(enrol())
    old_key = (tmp_path / "kek").read_bytes()
    assert cli_main(["keys", "check", "-c", str(cfg)]) == 0
    assert cli_main(["keys", "rotate", "-c", str(cfg), "--batch", "3", "--no-progress"]) == 0
    assert "20 subject key(s)" in capsys.readouterr().out
    assert (tmp_path / "kek").read_bytes() != old_key
    assert not (tmp_path / "kek.next").exists()
    assert cli_main(["keys", "check", "-c", str(cfg)]) == 0
    (tmp_path / "kek").write_bytes(old_key)
    assert cli_main(["keys", "check", "-c", str(cfg)]) == 1
    assert "does not match" in capsys.readouterr().err


@pytest.mark.asyncio
async def test_rotation_while_device_runs(tmp_path: Path) -> None:
    """A running store keeps enrolling during rotation; afterwards everything opens with the new key."""
    key_file = tmp_path / "kek"
    write_key_file(key_file, new_key())
    source = KekSource(kind=KekSourceKind.FILE, file=key_file)
    db = tmp_path / "g.db"
    async with Store(db, source) as device:
        await device.gallery.enroll_many([(f"s{i}", embeddings(1, seed=i)) for i in range(200)], "m")

        async def keep_enrolling() -> int:
            n = 0
            for i in range(30):
                await device.gallery.enroll(f"live{i}", embeddings(1, seed=1000 + i), "m")
                n += 1
                await asyncio.sleep(0)
            return n

        enrolled, report = await asyncio.gather(keep_enrolling(), rotate_kek(db, source, batch=7))
        assert report.total >= 200 and enrolled == 30
        await device.gallery.enroll("after", embeddings(1), "m")  # device picks up the new key
    async with Store(db, source) as st:
        sink = RecordingSink()
        rep = await st.gallery.load_all(sink)
        assert rep.templates == 231 and not rep.failures and rep.unavailable == 0


ROTATE_CHILD = """
import asyncio, sys
from pathlib import Path
from facegate.storage import KekSource, KekSourceKind, rotate_kek
src = KekSource(kind=KekSourceKind.FILE, file=Path(sys.argv[2]))
print("START", flush=True)
asyncio.run(rotate_kek(Path(sys.argv[1]), src, batch=1))
print("DONE", flush=True)
"""


def test_rotation_killed_midway_then_rerun(tmp_path: Path) -> None:
    key_file = tmp_path / "kek"
    db = tmp_path / "g.db"
    source = KekSource(kind=KekSourceKind.FILE, file=key_file)
    asyncio.run(init_kek(db, source))
    vectors = {f"s{i}": embeddings(1, seed=i) for i in range(150)}

    async def setup() -> None:
        async with Store(db, source) as st:
            await st.gallery.enroll_many(list(vectors.items()), "m")

    asyncio.run(setup())
    rng = random.Random(4)
    kills = 0
    for _ in range(4):
        proc = subprocess.Popen(
            [sys.executable, "-c", ROTATE_CHILD, str(db), str(key_file)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None and proc.stdout.readline().strip() == "START"
        time.sleep(rng.uniform(0.05, 0.4))
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            kills += 1
        proc.wait()
        _check_readable(db, key_file, vectors)
    assert kills >= 1, "rotation finished before any kill; make it slower"
    # A rerun finishes the job; afterwards the key file alone opens everything.
    assert subprocess.run(
        [sys.executable, "-c", ROTATE_CHILD, str(db), str(key_file)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.endswith("DONE\n")
    assert not (tmp_path / "kek.next").exists()
    _check_readable(db, key_file, vectors)


def _check_readable(db: Path, key_file: Path, vectors: dict[str, np.ndarray]) -> None:
    """Every subject decrypts with the old key, the new one, or both (whatever exists now)."""

    async def check() -> None:
        async with Store(db, KekSource(kind=KekSourceKind.FILE, file=key_file)) as st:
            sink = RecordingSink()
            rep = await st.gallery.load_all(sink)
            assert rep.templates == len(vectors) and not rep.failures and rep.unavailable == 0
            got = {s: e for (s, _), e in sink.rows.items()}
            for sid, vec in vectors.items():
                np.testing.assert_array_equal(got[sid], vec[0])
            assert await st.db.integrity_problems() == []

    asyncio.run(check())


@pytest.mark.asyncio
async def test_passphrase_rotation(tmp_path: Path) -> None:
    db = tmp_path / "p.db"
    old = KekSource(kind=KekSourceKind.PASSPHRASE, passphrase="old secret", scrypt_n=1 << 12)
    new = KekSource(kind=KekSourceKind.PASSPHRASE, passphrase="new secret", scrypt_n=1 << 12)
    async with Store(db, old) as st:
        await st.gallery.enroll_many([(f"s{i}", embeddings(1, seed=i)) for i in range(10)], "m")
    report = await rotate_kek(db, old, new_passphrase="new secret", batch=3)
    assert report.total == 10 and report.old_kek_id != report.new_kek_id
    with pytest.raises(WrongKekError, match="passphrase"):
        async with Store(db, old):
            pass
    async with Store(db, new) as st:
        rep = await st.gallery.load_all(RecordingSink())
        assert rep.templates == 10 and not rep.failures
