"""Fixtures for the reliability suite, and the run's summary.

At the end of a run the figures docs/reliability.md reports are printed (and,
with RELIABILITY_SUMMARY=PATH, written there as JSON with each scenario's result):
scenarios, payloads, outputs checked, tracebacks, leaked sequences, canary hits.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "serve"))  # serve_process.py

from kit import tally  # noqa: E402

_results: dict[str, str] = {}


@pytest.fixture
def home(tmp_path) -> Path:
    """A home of the test's own: config, data (history, sessions) and the working directory."""
    return tmp_path


@pytest.fixture(scope="module")
def serve_home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("serve")


def pytest_runtest_logreport(report):
    if "tests/reliability/" not in report.nodeid.replace(os.sep, "/"):
        return
    if report.when == "call" or report.outcome != "passed":
        outcome = "xfailed" if hasattr(report, "wasxfail") else report.outcome
        if _results.get(report.nodeid) in (None, "passed"):
            _results[report.nodeid] = outcome


def pytest_terminal_summary(terminalreporter):
    if not _results:
        return
    summary = _summary()
    terminalreporter.write_sep("-", "reliability summary")
    terminalreporter.write_line(
        f"scenarios {summary['scenarios']} ({summary['passed']} passed, {summary['failed']} failed, "
        f"{summary['xfailed']} xfailed) · payloads {summary['payloads']} · outputs checked {summary['outputs_checked']} · "
        f"tracebacks {summary['tracebacks']} · leaked sequences {summary['leaked_sequences']} · "
        f"canary hits {summary['canary_hits']} (in {summary['canary_checks']} outputs and files) · "
        f"fuzzed serve requests {summary['fuzzed_requests']}"
    )
    if path := os.environ.get("RELIABILITY_SUMMARY"):
        Path(path).write_text(json.dumps(summary | {"results": _results}, indent=1) + "\n")


def _summary() -> dict:
    from hostile import PAYLOADS

    outcomes = list(_results.values())
    return {
        "scenarios": len(outcomes),
        "passed": outcomes.count("passed"),
        "failed": outcomes.count("failed"),
        "xfailed": outcomes.count("xfailed"),
        "payloads": len(PAYLOADS),
        **{
            key: tally[key]
            for key in (
                "outputs_checked",
                "tracebacks",
                "leaked_sequences",
                "canary_hits",
                "canary_checks",
                "fuzzed_requests",
            )
        },
    }
