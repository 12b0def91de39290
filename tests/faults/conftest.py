"""The fault suite's report: one row per fault test, written where ``tools/fault_table.py``
turns it into the README's table of faults and hostile input.

Each test declares what it injects with a marker, next to the code that injects it::

    @pytest.mark.fault("consumer-kill", fault="kill -9 of a consumer", injected="SIGKILL ...",
                       expected="the producer resumes within its timeout ...")
    def test_...(fault_row):
        ...
        fault_row.observe("producer resumed 0.21 s after the kill; survivors lost 0")

and says what it saw with ``fault_row.observe``.  At the end of the session the rows (outcome,
observation, duration) are merged by test id into ``build/faults/report.json`` (or
``$HUGERING_FAULT_REPORT``): a partial run (``-k``) updates its rows and keeps the others.
The definitions (fault, how injected, expected) are read from the markers themselves, so the
table can never describe a test that does not exist.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
REPORT = Path(os.environ.get("HUGERING_FAULT_REPORT", ROOT / "build" / "faults" / "report.json"))
_ROWS: list[dict] = []


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "fault(id, fault, injected, expected): a row of the fault table "
                   "(tests/faults/conftest.py)")


class FaultRow:
    """What one fault test saw, for the report."""

    def __init__(self):
        self.observed: list[str] = []
        self.numbers: dict = {}

    def observe(self, text: str, **numbers) -> None:
        self.observed.append(text)
        self.numbers.update(numbers)


@pytest.fixture
def fault_row(request):
    row = FaultRow()
    request.node._fault_row = row
    return row


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    mark = item.get_closest_marker("fault")
    if mark is None or not mark.args:
        return
    if rep.when == "call" or (rep.when == "setup" and rep.outcome != "passed"):
        row = getattr(item, "_fault_row", None)
        reason = None
        if rep.skipped:
            reason = rep.longrepr[2] if isinstance(rep.longrepr, tuple) else str(rep.longrepr)
        elif rep.failed:
            reason = str(rep.longrepr).strip().splitlines()[-1][:300] if rep.longrepr else ""
        callspec = getattr(item, "callspec", None)
        _ROWS.append({
            "id": mark.args[0], "test": item.nodeid,
            "param": callspec.id if callspec is not None else None,
            "outcome": rep.outcome, "reason": reason,
            "observed": row.observed if row is not None else [],
            "numbers": row.numbers if row is not None else {},
            "seconds": round(rep.duration, 2), "time_ns": time.time_ns(),
            "user": os.geteuid(), "long": os.environ.get("HUGERING_LONG") == "1",
        })


def pytest_sessionfinish(session, exitstatus):
    if not _ROWS:
        return
    try:
        old = json.loads(REPORT.read_text())["rows"]
    except (OSError, ValueError, KeyError):
        old = []
    ran = {r["test"] for r in _ROWS}
    rows = [r for r in old if r.get("test") not in ran] + _ROWS
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    tmp = REPORT.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"rows": rows}, indent=1) + "\n")
    os.replace(tmp, REPORT)


@pytest.fixture
def hugetlbfs_or_shm():
    """The hugetlbfs mount when this user can use it (CI's root run), else None: POSIX shared
    memory (the ordinary-user run), so that process faults run in both."""
    from shm import backing as B
    size = B.mount_page_size(B.DEFAULT_HUGETLBFS)
    if size and os.access(B.DEFAULT_HUGETLBFS, os.W_OK) and B.free_hugepages(size) >= 16:
        return B.DEFAULT_HUGETLBFS
    return None
