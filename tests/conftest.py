"""Shared test hygiene: loop debug, a leaked-task guard, and shared fixtures.

pytest-asyncio runs in strict mode and every test has a timeout (pyproject).
Broker fixtures live in tests/fixtures/brokers.py; face image helpers in
tests/fixtures/faces.py.
"""

from __future__ import annotations

import os

os.environ["ORT_DISABLE_TELEMETRY"] = "1"  # before any test imports onnxruntime (issue 10.6)

import asyncio
import inspect
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
import structlog

pytest_plugins = ["tests.fixtures.brokers", "tests.fixtures.stores", "tests.fixtures.wheel"]

DATA = Path(__file__).parent / "data"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Attach the leaked-task guard to every coroutine test."""
    for item in items:
        fn = getattr(item, "obj", None)
        if fn is not None and inspect.iscoroutinefunction(fn):
            item.add_marker(pytest.mark.usefixtures("_task_leak_guard"))


@pytest_asyncio.fixture
async def _task_leak_guard() -> AsyncIterator[None]:
    """Run with loop debug on, and fail the test if it leaves tasks running."""
    loop = asyncio.get_running_loop()
    loop.set_debug(True)
    loop.slow_callback_duration = 0.5  # model loading in fixtures is legitimately slow
    before = set(asyncio.all_tasks())
    yield
    current = asyncio.current_task()
    # Tasks still finishing their cancellation get a few seconds (a loaded machine is slow);
    # a leaked one is still running then.
    deadline = loop.time() + 5.0
    while True:
        leaked = [t for t in asyncio.all_tasks() - before if t is not current and not t.done()]
        if not leaked:
            return
        if loop.time() > deadline:
            break
        await asyncio.sleep(0.01)
    names = ", ".join(sorted(t.get_name() for t in leaked))
    for t in leaked:
        t.cancel()
    await asyncio.gather(*leaked, return_exceptions=True)
    pytest.fail(f"test leaked {len(leaked)} running task(s): {names}")


@pytest.fixture(autouse=True)
def _logging_restored() -> Iterator[None]:
    """A test that configures logging (a CLI or bench ``main()``) leaks nothing into later tests.

    Without it, e.g. ``rights_bench.main()`` (level ``error``) left structlog filtering out the
    info-level state changes that a later ``capture_logs()`` test asserts on.
    """
    config = structlog.get_config()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    structlog.configure(**config)
    structlog.contextvars.clear_contextvars()
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def data_dir() -> Path:
    """The committed test data folder (face samples with NOTICE)."""
    return DATA
