#!/usr/bin/env python3
"""The README's table of faults and hostile input, generated from the fault suite itself.

    tools/fault_table.py                # print the table (definitions + the latest report)
    tools/fault_table.py --write        # put it in README.md between the fault-table markers
    tools/fault_table.py --check        # exit 1 if README's rows differ from the tests' markers

Two sources, both the suite's own:

* **definitions** -- each test in ``tests/faults/test_*.py`` declares the fault it injects with
  ``@pytest.mark.fault(id, fault=..., injected=..., expected=...)``; they are read here from the
  source (``ast``, nothing is imported or run), so a row can only describe a test that exists;
* **results** -- what each test saw (``fault_row.observe``), its outcome and duration, from the
  report the suite writes at the end of every run (``build/faults/report.json``;
  ``tests/faults/conftest.py``).  A parametrised test has one result per case.

``--check`` compares the definition columns only (id, fault, how injected, expected): results
and timings change from run to run, definitions must not drift from the code.
"""
from __future__ import annotations

import argparse
import ast
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FAULTS = ROOT / "tests" / "faults"
README = ROOT / "README.md"
REPORT = ROOT / "build" / "faults" / "report.json"
BEGIN, END = "<!-- fault-table-begin -->", "<!-- fault-table-end -->"
ORDER = ["test_soak.py", "test_process_faults.py", "test_resource_faults.py",
         "test_hostile_input.py", "test_leak_monitor.py"]
HEADER = ["id", "fault or hostile input", "injected how", "expected", "result",
          "observed (latest run)"]
DEFINITION_COLUMNS = 4


def _const(node) -> str:
    """A marker argument: a string literal, or literals joined by implicit concatenation."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    raise ValueError(f"line {node.lineno}: fault marker arguments must be string literals")


def definitions(faults_dir: Path = FAULTS) -> list[dict]:
    """Every ``@pytest.mark.fault`` of the suite, in table order."""
    files = sorted(faults_dir.glob("test_*.py"),
                   key=lambda p: (ORDER.index(p.name) if p.name in ORDER else len(ORDER), p.name))
    out = []
    for path in files:
        tree = ast.parse(path.read_text(), filename=str(path))
        for fn in tree.body:
            if not isinstance(fn, ast.FunctionDef):
                continue
            for dec in fn.decorator_list:
                if (isinstance(dec, ast.Call) and isinstance(dec.func, ast.Attribute)
                        and dec.func.attr == "fault"):
                    kw = {k.arg: _const(k.value) for k in dec.keywords}
                    out.append({"id": _const(dec.args[0]), "fault": kw["fault"],
                                "injected": kw["injected"], "expected": kw["expected"],
                                "test": f"{path.relative_to(ROOT)}::{fn.name}"})
    ids = [d["id"] for d in out]
    dup = {i for i in ids if ids.count(i) > 1}
    if dup:
        raise ValueError(f"fault ids used twice: {sorted(dup)}")
    return out


def load_report(path: Path = REPORT) -> list[dict]:
    try:
        return json.loads(path.read_text())["rows"]
    except (OSError, ValueError, KeyError):
        return []


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def result_of(rows: list[dict]) -> tuple[str, str]:
    """(result, observed) of one fault's test cases."""
    if not rows:
        return "not run", ""
    n = len(rows)
    passed = sum(r["outcome"] == "passed" for r in rows)
    failed = [r for r in rows if r["outcome"] == "failed"]
    skipped = [r for r in rows if r["outcome"] == "skipped"]
    if failed:
        result = f"FAIL ({len(failed)}/{n})"
    elif skipped and not passed:
        result = f"skipped ({skipped[0]['reason']})"
    else:
        result = "pass" + (f" ({passed}/{n})" if n > 1 else "")
    obs = []
    for r in rows:
        text = "; ".join(r["observed"]) or (r["reason"] or "")
        if r["outcome"] == "failed":
            text = f"FAILED: {r['reason']}"
        if r.get("long") and text:
            text = "[HUGERING_LONG=1] " + text
        obs.append(text)
    secs = sum(r.get("seconds", 0) for r in rows)
    return result, " / ".join(o for o in obs if o) + f" ({secs:.1f} s)"


def render(defs: list[dict], rows: list[dict]) -> str:
    by_id: dict[str, dict[str, dict]] = {}
    for r in sorted(rows, key=lambda r: r.get("time_ns", 0)):
        by_id.setdefault(r["id"], {})[r["test"]] = r          # the latest of each case
    latest = max((r.get("time_ns", 0) for r in rows), default=0)
    users = sorted({"root" if r.get("user") == 0 else f"uid {r.get('user')}" for r in rows})
    sizes = "make test sizes" + ("; rows marked [HUGERING_LONG=1] ran at the full sizes"
                                 if any(r.get("long") for r in rows) else "")
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(latest / 1e9)) if latest else "never"
    lines = [f"Generated by `tools/fault_table.py --write` from the fault suite's own report "
             f"(`build/faults/report.json`, latest run {when}, as {', '.join(users) or '-'}, "
             f"{sizes}).", "",
             "| " + " | ".join(HEADER) + " |", "|" + " --- |" * len(HEADER)]
    for d in defs:
        result, observed = result_of(list(by_id.get(d["id"], {}).values()))
        cells = [f"`{d['id']}`", d["fault"], d["injected"], d["expected"], result, observed]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines)


def readme_rows(text: str) -> list[list[str]]:
    """The table rows between the markers of a README, as cells (header excluded)."""
    if BEGIN not in text or END not in text:
        raise ValueError(f"README has no {BEGIN} ... {END} section")
    body = text.split(BEGIN, 1)[1].split(END, 1)[0]
    rows = [ln for ln in body.splitlines() if ln.startswith("| `")]       # id cells: `id`
    out = []
    for ln in rows:
        cells = [c.strip().replace("\\|", "|") for c in
                 ln.strip()[2:-2].replace("\\|", "\x00").split(" | ")]
        out.append([c.replace("\x00", "|") for c in cells])
    return out


def check(readme: Path = README, faults_dir: Path = FAULTS) -> list[str]:
    """Differences between README's rows and the markers (definition columns only)."""
    want = [[f"`{d['id']}`", _cell(d["fault"]), _cell(d["injected"]), _cell(d["expected"])]
            for d in definitions(faults_dir)]
    have = [[c.replace("|", "\\|") for c in r[:DEFINITION_COLUMNS]]
            for r in readme_rows(readme.read_text())]
    problems = []
    for i in range(max(len(want), len(have))):
        w = want[i] if i < len(want) else None
        h = have[i] if i < len(have) else None
        if w != h:
            problems.append(f"row {i + 1}: README has {h}, the tests define {w}")
    return problems


def write(readme: Path = README, report: Path = REPORT) -> None:
    text = readme.read_text()
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{readme}: no {BEGIN} ... {END} section to fill")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    table = render(definitions(), load_report(report))
    readme.write_text(f"{head}{BEGIN}\n{table}\n{END}{tail}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--report", type=Path, default=REPORT, help="the suite's report (JSON)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--write", action="store_true", help="update README.md between the markers")
    g.add_argument("--check", action="store_true",
                   help="exit 1 if README's definitions differ from the tests' markers")
    a = p.parse_args(argv)
    if a.write:
        write(README, a.report)
        print(f"wrote the fault table into {README}")
        return 0
    if a.check:
        problems = check()
        for line in problems:
            print(line, file=sys.stderr)
        return 1 if problems else 0
    print(render(definitions(), load_report(a.report)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
