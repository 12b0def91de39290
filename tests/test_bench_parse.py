"""``tools/bench_parse.py --quick --json`` runs end to end: one JSON object with the promised
keys, positive numbers, and the match counts of hugering, C, dpkt and pypacker equal (the
benchmark itself fails when they are not).  A smoke test: no timing is asserted (benchmarks
are programs, not timed tests)."""
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

pytest.importorskip("dpkt", reason="needs the bench extra (pip install -e .[bench])")
pytest.importorskip("pypacker", reason="needs the bench extra (pip install -e .[bench])")
needs_cc = pytest.mark.skipif(BC.find_cc() is None, reason="needs a C compiler (gcc)")

KEYS = ("hugering_ns", "c_ns", "dpkt_ns", "pypacker_ns", "hugering_mpps", "c_mpps", "dpkt_mpps",
        "pypacker_mpps", "ratio_vs_c", "ratio_vs_c_paired", "speedup_vs_dpkt",
        "speedup_vs_pypacker")


@needs_cc
@pytest.mark.timeout(600)
def test_quick_json():
    cpu = min(BC.available_cpus())
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "bench_parse.py"), "--quick",
                           "--json", "--cpus", str(cpu)], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1, proc.stdout            # exactly one JSON object on stdout
    r = json.loads(lines[0])
    for k in KEYS:
        assert isinstance(r[k], float) and r[k] > 0, k
    assert r["frames"] == 20_000 and r["sample_frames"] == 2_000 and r["repeats"] == 1
    assert r["rules"].count(" or (") == 4 and len(r["rule_list"]) == 5
    m = r["matches"]
    assert m["hugering"] == m["c"] and 0 < m["hugering"] < r["frames"]
    assert m["hugering_sample"] == m["dpkt_sample"] == m["pypacker_sample"] > 0
    assert all(v > 0 for v in m["per_rule_sample"].values())    # every rule matches something
    assert r["machine"]["nproc"] >= 1 and r["cpu"] == cpu
    assert r["ratio_vs_c"] == pytest.approx(r["c_ns"] / r["hugering_ns"])
    assert r["speedup_vs_dpkt"] == pytest.approx(r["dpkt_ns"] / r["hugering_ns"])


@needs_cc
@pytest.mark.timeout(600)
def test_distinct_repeats_a_few_frames_and_still_verifies():
    """--distinct N: N frames repeated to --frames; every implementation is still checked
    against the others, and the match counts repeat with the frames."""
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "bench_parse.py"), "--quick",
                           "--json", "--distinct", "500", "--frames", "5000", "--sample",
                           "1000", "--cpus", str(min(BC.available_cpus()))], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    r = json.loads(proc.stdout)
    assert r["distinct_frames"] == 500 and r["frames"] == 5000
    m = r["matches"]
    assert m["hugering"] == m["c"] == 10 * (m["hugering_sample"] // 2)
    bad = subprocess.run([sys.executable, str(ROOT / "tools" / "bench_parse.py"), "--quick",
                          "--distinct", "-1"], cwd=ROOT, capture_output=True, text=True)
    assert bad.returncode == 1 and "--distinct >= 0" in bad.stderr


def test_the_default_burst_is_the_engines():
    """The benchmark times the loop a consumer runs: the same burst as ConsumerEngine's."""
    import inspect

    import bench_parse
    from engine.loop import ConsumerEngine
    assert bench_parse.DEFAULTS["burst"] == \
        inspect.signature(ConsumerEngine).parameters["burst"].default
