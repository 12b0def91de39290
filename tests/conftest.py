"""Shared fixtures.

Under ``CI=true`` a skipped test is a failed test: CI runs as root with hugepages mounted, so
nothing that needs root, hugepages, AF_XDP or DPDK has an excuse to skip there.  On a
developer's machine (or as an ordinary user) such tests skip with the reason.
"""
from __future__ import annotations

import itertools
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from shm import backing as B  # noqa: E402

IN_CI = os.environ.get("CI", "").lower() == "true"
_counter = itertools.count()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if IN_CI and rep.skipped and not hasattr(rep, "wasxfail"):
        reason = rep.longrepr[2] if isinstance(rep.longrepr, tuple) else str(rep.longrepr)
        rep.outcome = "failed"
        rep.longrepr = f"skipped under CI=true, where nothing may skip: {reason}"


def is_root() -> bool:
    return os.geteuid() == 0


def hugetlbfs_usable(pages: int = 4) -> str | None:
    """The default hugetlbfs mount if this user can create a ring there, else None."""
    size = B.mount_page_size(B.DEFAULT_HUGETLBFS)
    if size is None or not os.access(B.DEFAULT_HUGETLBFS, os.W_OK):
        return None
    if B.free_hugepages(size) < pages:
        return None
    return B.DEFAULT_HUGETLBFS


@pytest.fixture
def need_root():
    if not is_root():
        pytest.skip("needs root")


@pytest.fixture
def hugetlbfs():
    """Path of a usable hugetlbfs mount (skips, or fails under CI, when there is none)."""
    path = hugetlbfs_usable()
    if path is None:
        pytest.skip("needs a writable hugetlbfs mount at /dev/hugepages with free huge pages "
                    "(see .ci/run)")
    return path


@pytest.fixture
def ring_name(request):
    """A ring name unique to this test process and test; every ring with it is removed after."""
    name = f"t{os.getpid()}-{next(_counter)}"
    yield name
    for n in os.listdir("/dev/shm"):          # engine stats regions (engine/stats.py)
        if n == f"hugering-stats.{name}" or n.startswith(f"hugering-stats.{name}."):
            try:
                os.unlink(os.path.join("/dev/shm", n))
            except OSError:
                pass
    for n, _ in B.list_rings():
        if n == name or n.startswith(name + "."):
            try:
                bk = B.open_file(n)
                bk.close()
                bk.unlink()
            except B.RingError:
                pass
