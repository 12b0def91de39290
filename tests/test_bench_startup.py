"""Smoke test of ``tools/bench_startup.py`` (consumer process start-up: spawn -> first packet).

``--quick --json`` runs end to end (one cold start with empty caches, two warm ones, the
references) and prints one JSON object with the promised keys and positive numbers.  The only
timing asserted is that a warm start beats a cold one (the cold one compiles everything for
tens of seconds, the warm one loads it from the cache); the < 1 s target of the warm start is
the benchmark's to report, not a test's to assert on a shared machine.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOOLS = ROOT / "tools"

sys.path.insert(0, str(TOOLS))
import bench_common as BC  # noqa: E402

pytestmark = pytest.mark.pure          # computation only: as root, as any user (conftest)

BREAKDOWN = ("interpreter_s", "import_s", "construct_s", "warm_up_s", "run_to_handler_s",
             "run_to_return_s", "handler_first_packet_s", "first_packet_s")
OPTIONAL = ("run_to_handler_s", "handler_first_packet_s")


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_bench_startup_quick_json():
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    cpus = sorted(BC.available_cpus())[:2]
    res = subprocess.run([sys.executable, str(TOOLS / "bench_startup.py"), "--quick", "--json",
                          "--cpus", ",".join(map(str, cpus))],
                         capture_output=True, text=True, cwd=str(ROOT), env=env, timeout=290)
    assert res.returncode == 0, res.stderr[-4000:]
    lines = [line for line in res.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, res.stdout           # exactly one JSON object on stdout
    d = json.loads(lines[0])

    keys = ["cold_first_packet_s", "warm_first_packet_s", "target_warm_s",
            "reference_python_import_s", "reference_python_import_exit_s",
            "reference_numba_cached_call_s"]
    if BC.find_cc():
        keys.append("reference_c_first_packet_s")
    for key in keys:
        assert isinstance(d[key], float) and d[key] > 0, key
    assert d["target_warm_s"] == 1.0
    assert isinstance(d["warm_meets_target"], bool)
    assert d["warm_first_packet_s"] < d["cold_first_packet_s"]
    assert d["repeats"] == {"cold": 1, "warm": 2}

    for case in ("cold", "warm"):
        b = d["breakdown"][case]
        for key in BREAKDOWN:
            if key in OPTIONAL and key not in b:
                continue       # the packet's slot was reused before the child could read it
            assert b[key] > 0, (case, key)
        # the parts add up to no more than the whole (same clock, disjoint intervals)
        assert b["interpreter_s"] + b["import_s"] + b["construct_s"] < b["first_packet_s"]
        assert b["warm_up_s"] <= b["construct_s"]
        assert b.get("handler_first_packet_s", 0) <= b["first_packet_s"]
        s = d["runs"][f"{case}_first_packet_s"]
        assert s["min"] <= s["median"] <= s["max"]
        assert len(s["values"]) == d["repeats"][case]
    assert d["machine"]["nproc"] >= 1 and "model_name" in d["machine"]
