"""pytest plugin for CI: fail the run if any Mosquitto-backed test was skipped (or none ran).

Loaded by .ci/run with ``-p mosquitto_guard``. A test is Mosquitto-backed when it
carries the ``mosquitto`` marker (directly or through a parametrized fixture).
"""

from __future__ import annotations

import pytest

_ran: set[str] = set()
_skipped: dict[str, str] = {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    # A test that uses the mosquitto fixture without the marker still skips with a reason
    # naming the binary: count that as a Mosquitto-backed skip too.
    if report.skipped and "mosquitto" in str(report.longrepr).lower():
        _skipped[report.nodeid] = str(report.longrepr)[-200:]
        return
    if "mosquitto" not in report.keywords:
        return
    if report.skipped:
        _skipped[report.nodeid] = str(report.longrepr)[-200:]
    elif report.when == "call":
        _ran.add(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    problems = []
    if _skipped:
        problems.append(f"{len(_skipped)} Mosquitto-backed test(s) were skipped:")
        problems += [f"  {nodeid}: {why}" for nodeid, why in sorted(_skipped.items())]
    if not _ran:
        problems.append("no Mosquitto-backed test ran")
    if problems:
        if reporter is not None:
            reporter.write_line("mosquitto_guard: " + "\n".join(problems), red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    elif reporter is not None:
        reporter.write_line(f"mosquitto_guard: {len(_ran)} Mosquitto-backed tests ran, none skipped")
