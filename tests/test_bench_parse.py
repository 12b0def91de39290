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
        "speedup_vs_pypacker", "memory_floor_ns", "header_floor_ns")


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


def test_header_bytes_bounds_the_deepest_header_of_the_mix():
    """The header floor loads only the lines up to HEADER_BYTES: the mix's deepest header (an
    802.1Q tag + IPv6 + TCP) ends exactly there, and no frame reads past it."""
    import numpy as np

    import bench_parse
    from parsers.record import new_records
    slots = bench_parse.make_frames(4000, seed=3)
    flat = slots.view(np.uint8).reshape(-1)
    deepest = bench_parse.deepest_header_end(flat, slots.dtype.itemsize, bench_parse.SLOT_SIZE,
                                             len(slots), new_records(1))
    assert deepest == bench_parse.HEADER_BYTES == 18 + 40 + 20
    # and the scan sees a deeper header when there is one: TCP with 12 bytes of options
    one = slots[:1].copy()
    tcp6 = np.nonzero([bytes(p[12:14]) == b"\x81\x00" and bytes(p[16:18]) == b"\x86\xdd"
                       and p[24] == 6 for p in slots["payload"]])[0][0]
    one[0] = slots[tcp6]
    one["payload"][0, 18 + 40 + 12] = 0x80                   # data offset 8: 32 header bytes
    assert bench_parse.deepest_header_end(one.view(np.uint8).reshape(-1), one.dtype.itemsize,
                                          bench_parse.SLOT_SIZE, 1, new_records(1)) == 18 + 40 + 32
