"""``tools/bench_match.py --quick --json`` runs end to end: one JSON object with the promised
keys and positive numbers.  The benchmark itself fails (exit 1) unless the C reference's ITCH
output is byte-identical to the engine's and both books end the same, so a passing run also
says the two implementations did the same work.  A smoke test: no timing is asserted
(benchmarks are programs, not timed tests)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import bench_common as BC  # noqa: E402

pytestmark = pytest.mark.pure          # computation only: as root, as any user (conftest)

needs_cc = pytest.mark.skipif(BC.find_cc() is None, reason="needs a C compiler (gcc)")


@needs_cc
@pytest.mark.timeout(600)
def test_quick_json():
    cpu = min(BC.available_cpus())
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "bench_match.py"), "--quick",
                           "--json", "--cpus", str(cpu)], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1, proc.stdout            # exactly one JSON object on stdout
    r = json.loads(lines[0])
    for k in ("ops_per_s", "c_ops_per_s", "ratio_vs_c", "ns_per_op", "c_ns_per_op",
              "timer_overhead_ns", "tsc_hz"):
        assert isinstance(r[k], float) and r[k] > 0, k
    for lat in (r["latency_ns"], r["c_latency_ns"]):
        assert set(lat) >= {"p50", "p99", "p9999"}
        assert 0 < lat["p50"] <= lat["p99"] <= lat["p9999"]
    assert r["ratio_vs_c"] == pytest.approx(r["ops_per_s"] / r["c_ops_per_s"])
    b = r["book"]
    for k in ("updates_per_s", "c_updates_per_s", "ratio_vs_c"):
        assert isinstance(b[k], float) and b[k] > 0, k
    assert b["final"]["open_orders"] > 0 and b["messages"] == 60_000
    c = r["engine_counters"]
    assert r["messages"] == c["messages"] == 40_000 and r["repeats"] == 1
    assert c["fills"] > 0 and c["rested"] > 0 and c["deleted"] > 0 and c["replaced"] > 0
    assert r["output_bytes"] > 0 and r["cpu"] == cpu and r["machine"]["nproc"] >= 1
