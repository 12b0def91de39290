"""The README's table of faults and hostile input stays what the suite defines
(``tools/fault_table.py``): every ``@pytest.mark.fault`` has its row, in order, with the same
fault, injection and expectation; results come from the suite's report."""
from __future__ import annotations

import subprocess
import sys

from faultkit import ROOT, TOOLS

sys.path.insert(0, str(TOOLS))
import fault_table as T  # noqa: E402


def test_readme_table_rows_are_the_suites_fault_definitions():
    problems = T.check()
    assert not problems, ("README's fault table differs from the tests' markers; run "
                          "tools/fault_table.py --write after the suite:\n" + "\n".join(problems))
    ids = [d["id"] for d in T.definitions()]
    assert len(ids) >= 20 and len(set(ids)) == len(ids)
    p = subprocess.run([sys.executable, str(TOOLS / "fault_table.py"), "--check"],
                       capture_output=True, text=True, cwd=str(ROOT))
    assert p.returncode == 0, p.stderr


def test_every_fault_test_declares_its_row_and_every_row_a_test():
    """Each test function in tests/faults that injects something is in the table (the
    self-checks of the monitor's rule and of this table are not faults)."""
    import ast
    marked = {d["test"].split("::")[1] for d in T.definitions()}
    unmarked = []
    for path in sorted(T.FAULTS.glob("test_*.py")):
        for fn in ast.parse(path.read_text()).body:
            if isinstance(fn, ast.FunctionDef) and fn.name.startswith("test_") \
                    and fn.name not in marked:
                unmarked.append(f"{path.name}::{fn.name}")
    assert sorted(unmarked) == sorted([
        "test_fault_table.py::test_readme_table_rows_are_the_suites_fault_definitions",
        "test_fault_table.py::test_every_fault_test_declares_its_row_and_every_row_a_test",
        "test_fault_table.py::test_results_and_observations_are_rendered_from_the_report",
        "test_leak_monitor.py::test_the_rule_against_hand_made_series",
        "test_leak_monitor.py::test_the_alarm_latches_until_the_count_falls_below_the_floor",
    ]), unmarked


def test_results_and_observations_are_rendered_from_the_report():
    defs = [{"id": "a", "fault": "A", "injected": "x | y", "expected": "e", "test": "t::a"},
            {"id": "b", "fault": "B", "injected": "i", "expected": "e", "test": "t::b"},
            {"id": "c", "fault": "C", "injected": "i", "expected": "e", "test": "t::c"},
            {"id": "d", "fault": "D", "injected": "i", "expected": "e", "test": "t::d"}]
    rows = [
        {"id": "a", "test": "t::a[1]", "outcome": "passed", "observed": ["one"], "reason": None,
         "seconds": 1.0, "time_ns": 1, "user": 0},
        {"id": "a", "test": "t::a[2]", "outcome": "passed", "observed": ["two"], "reason": None,
         "seconds": 2.0, "time_ns": 2, "user": 0},
        {"id": "b", "test": "t::b", "outcome": "failed", "observed": [], "reason": "boom",
         "seconds": 1.0, "time_ns": 3, "user": 0},
        {"id": "c", "test": "t::c", "outcome": "skipped", "observed": [], "reason": "needs root",
         "seconds": 0.0, "time_ns": 4, "user": 1000},
        {"id": "b", "test": "t::b", "outcome": "passed", "observed": ["fixed"], "reason": None,
         "seconds": 1.0, "time_ns": 5, "user": 0, "long": True},   # the latest run of b wins
    ]
    table = T.render(defs, rows).splitlines()
    body = [ln for ln in table if ln.startswith("| `")]
    assert body[0] == "| `a` | A | x \\| y | e | pass (2/2) | one / two (3.0 s) |"
    assert body[1] == "| `b` | B | i | e | pass | [HUGERING_LONG=1] fixed (1.0 s) |"
    assert body[2] == "| `c` | C | i | e | skipped (needs root) | needs root (0.0 s) |"
    assert body[3] == "| `d` | D | i | e | not run |  |"
    assert "as root, uid 1000" in table[0] and "rows marked [HUGERING_LONG=1]" in table[0]
    cells = T.readme_rows(f"{T.BEGIN}\n" + "\n".join(table) + f"\n{T.END}")
    assert cells[0][:4] == ["`a`", "A", "x | y", "e"]
