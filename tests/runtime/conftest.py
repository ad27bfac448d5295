"""Fixtures of the runtime tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .util import CapturedLogs


@pytest.fixture
def logs() -> Iterator[CapturedLogs]:
    """structlog configured by configure_logging() into a StringIO, reset afterwards."""
    captured = CapturedLogs()
    yield captured
    CapturedLogs.reset()


@pytest.fixture
def debug_logs() -> Iterator[CapturedLogs]:
    """Like ``logs`` at debug level."""
    captured = CapturedLogs(level="debug")
    yield captured
    CapturedLogs.reset()
