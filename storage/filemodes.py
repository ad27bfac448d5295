"""Owner-only files regardless of the process umask (issue 10.5).

Under a umask of 022 (any shell, any service manager but systemd with
``UMask=0077``) SQLite creates the database, the key vault and their
``-wal``/``-shm`` files 0644: readable by every local user. SQLite creates the
``-wal``/``-shm``/journal files with the permissions of their database file,
so creating (or tightening) the database files 0600 BEFORE SQLite opens them
is enough. A missing data directory is created 0700. An existing directory
is left alone (it may be shared, like /tmp): put the database in a private one.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

FILE_MODE = 0o600
DIR_MODE = 0o700
SIDE_FILES = ("-wal", "-shm", "-journal")


def private_dir(directory: Path) -> None:
    """Create ``directory`` (and missing parents) 0700; an existing one is not changed."""
    if directory.is_dir():
        return
    missing = [d for d in (directory, *directory.parents) if not d.exists()]
    directory.mkdir(parents=True, exist_ok=True)
    for d in missing:
        with contextlib.suppress(OSError):
            os.chmod(d, DIR_MODE)


def private_file(path: Path) -> None:
    """Make ``path`` exist with mode 0600 (created empty if missing, tightened if looser).

    Its SQLite side files (``-wal``, ``-shm``, ``-journal``) are tightened too when present.
    """
    private_dir(path.parent)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), FILE_MODE)
    try:
        _tighten(fd)
    finally:
        os.close(fd)
    for suffix in SIDE_FILES:
        side = Path(f"{path}{suffix}")
        with contextlib.suppress(FileNotFoundError):
            fd = os.open(side, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
            try:
                _tighten(fd)
            finally:
                os.close(fd)


def _tighten(fd: int) -> None:
    st = os.fstat(fd)
    if stat.S_IMODE(st.st_mode) & 0o077 and st.st_uid == os.geteuid():
        os.fchmod(fd, FILE_MODE)


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` as a 0600 file (a new file, or an existing one tightened first)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0), FILE_MODE)
    try:
        _tighten(fd)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)
