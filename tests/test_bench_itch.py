"""``tools/bench_itch.py --quick --json`` runs end to end: one JSON object with the promised keys,
positive rates, the hugering and C books verified equal (the benchmark itself exits 1 when they
are not) and no NRT allocation that scales with messages.  A smoke test: the performance
targets are reported, not asserted (benchmarks are programs, not timed tests; this is a noisy
shared 2-vCPU machine)."""
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

RATES = ("msgs_per_s", "c_msgs_per_s", "ratio_vs_c", "ratio_vs_c_paired", "ns_per_msg",
         "c_ns_per_msg")


def run_bench(*extra: str) -> dict:
    cpu = min(BC.available_cpus())
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "bench_itch.py"), "--quick",
                           "--json", "--cpus", str(cpu), *extra], cwd=ROOT, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1, proc.stdout            # exactly one JSON object on stdout
    r = json.loads(lines[0])
    assert r["cpu"] == cpu
    return r


@needs_cc
@pytest.mark.timeout(900)
def test_quick_json():
    r = run_bench("--instruments", "64", "--breakdown")
    for k in RATES:
        assert isinstance(r[k], float) and r[k] > 0, k
    assert r["benchmark"] == "itch" and r["messages"] == 200_000 and r["instruments"] == 64
    assert r["repeats"] == 1 and r["bytes"] > 20 * r["messages"]
    assert r["ratio_vs_c"] == pytest.approx(r["msgs_per_s"] / r["c_msgs_per_s"])
    assert r["msgs_per_s"] == pytest.approx(1e9 / r["ns_per_msg"])
    assert r["c_msgs_per_s"] == pytest.approx(1e9 / r["c_ns_per_msg"])
    assert r["targets"] == {"msgs_per_s": 20e6, "ratio_vs_c": 0.9,
                            "nrt_steady_state_allocations": 0}
    for impl in ("hugering", "c"):
        for what in ("msgs_per_s", "ns_per_msg"):
            s = r[impl][what]
            assert len(s["values"]) == 1 and s["min"] <= s["median"] <= s["max"], (impl, what)
    assert r["hugering"]["ns_per_msg"]["median"] == pytest.approx(r["ns_per_msg"])
    assert r["machine"]["nproc"] >= 1

    # the books were compared in full and replay the feed
    v = r["verification"]
    assert v["agree"] is True and v["instruments_compared"] == 64
    assert v["open_orders"] == r["feed"]["live_orders"] > 0 and v["levels_compared"] > 0
    c, by = v["counters"], r["feed"]["by_type"]
    assert c["adds"] == by["A"] + by["F"] and c["deletes"] == by["D"]
    assert c["unknown_ref"] == c["dup_ref"] == c["itch_bad"] == 0
    assert sum(by.values()) == r["messages"]
    bid, ask = v["best_locate_1"]["bid"], v["best_locate_1"]["ask"]
    assert bid[0] > 0 and ask[0] > 0 and bid[1] > 0 and ask[1] > 0   # (price, shares, orders)

    # zero NRT allocations in the steady-state loop (N vs 8N messages)
    nrt = r["nrt"]
    assert nrt["ok"] is True and nrt["small"] == nrt["large"], nrt
    assert nrt["steady_state_allocations"] == 0 and nrt["messages"][1] == 8 * nrt["messages"][0]
    assert r["meets_targets"]["nrt_steady_state_allocations"] is True

    # the breakdown: every pass timed on both sides, the cheaper ones cheaper
    bd = r["breakdown"]
    for impl in ("hugering", "c"):
        for k in ("walk_ns", "decode_ns", "full_ns", "noprefetch_ns"):
            assert bd[impl][k] > 0, (impl, k)
        assert bd[impl]["walk_ns"] < bd[impl]["full_ns"]
    assert set(bd["checksums"]) == {"walk", "decode"}


@needs_cc
@pytest.mark.timeout(900)
def test_quick_default_instruments_without_nrt_check():
    r = run_bench("--no-nrt-check")
    assert r["instruments"] == 1000 and r["nrt"] is None
    assert r["verification"]["agree"] is True and r["verification"]["instruments_compared"] == 1000
    assert r["meets_targets"]["nrt_steady_state_allocations"] is None
    assert r["msgs_per_s"] > 0 and r["c_msgs_per_s"] > 0
