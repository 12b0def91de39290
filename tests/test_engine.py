"""The engine's consumer loop, counters and histogram (engine/loop.py, loop_body.py, stats.py).

Multi-process runs use the real synthetic producer (``hugering synth``), whose frames carry
(producer id, sequence) stamps; counters are compared exactly, from the consumer's own report
and from ``hugering stat --json`` in another process.
"""
from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from engine import stats as S
from shm.ring import Ring

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
HUGERING = [sys.executable, "-m", "engine.cli"]


def run_cli(*args, timeout=120):
    return subprocess.run([*HUGERING, *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=timeout)


# --- histogram ------------------------------------------------------------------------------
def naive_index(v: int) -> int:
    """HdrHistogram's log-linear bucket, the slow way."""
    v = max(v, 0)
    if v < S.LINEAR:
        return v
    e = v.bit_length() - 1
    if e >= S.MAX_EXP:
        return S.HIST_BUCKETS - 1
    width = 1 << (e - S.SUB_BITS)
    return S.LINEAR + (e - S.SUB_BITS - 1) * (1 << S.SUB_BITS) + (v - (1 << e)) // width


def test_histogram_index_matches_the_naive_reference():
    rng = random.Random(3)
    values = list(range(0, 5000)) + [-5, -1, 2**40, 2**40 - 1, 2**62, 2**63 - 1]
    values += [rng.randrange(0, 2**rng.randrange(1, 63)) for _ in range(20000)]
    values += [(1 << e) + d for e in range(8, 45) for d in (-1, 0, 1)]
    for v in values:
        assert S.hist_index(v) == naive_index(v), v


def test_histogram_buckets_tile_the_range_with_bounded_error():
    lo, hi = S.bucket_bounds()
    assert lo[0] == 0 and (lo[1:] == hi[:-1] + 1).all()           # contiguous, no overlap
    for i in [*range(0, 300), *range(300, S.HIST_BUCKETS - 1, 37), S.HIST_BUCKETS - 2]:
        assert S.hist_index(int(lo[i])) == i and S.hist_index(int(hi[i])) == i
        assert S.hist_lowest(i) == lo[i] and S.hist_highest(i) == hi[i]
        if lo[i] >= S.LINEAR:
            assert (hi[i] - lo[i] + 1) / lo[i] <= S.REL_ERROR     # the stated bound
        else:
            assert hi[i] == lo[i]                                 # exact at the bottom


def test_percentiles_against_raw_samples():
    rng = np.random.default_rng(7)
    raw = np.concatenate([rng.integers(0, 300, 5000), rng.lognormal(8, 1.5, 50000).astype(
        np.int64), [10**10, 3 * 10**12]])
    hist = np.zeros(S.HIST_BUCKETS, np.int64)
    for v in raw:
        hist[S.hist_index(int(v))] += 1
    got = S.percentiles(hist, (0.1, 50, 90, 99, 99.9, 99.99, 100), max_value=int(raw.max()))
    s = np.sort(raw)
    for q, name in zip((0.1, 50, 90, 99, 99.9, 99.99, 100),
                       ("p0_1", "p50", "p90", "p99", "p99_9", "p99_99", "p100")):
        exact = int(s[max(1, int(np.ceil(q / 100 * len(s) - 1e-9))) - 1])
        assert exact <= got[name] <= exact * (1 + S.REL_ERROR) + 1, (q, exact, got[name])
    assert S.percentiles(np.zeros(S.HIST_BUCKETS, np.int64))["p50"] is None


# --- the loop, in this process ---------------------------------------------------------------
def publish_synthetic(ring, count, **kw):
    from engine.producers.synthetic import SyntheticProducer
    with SyntheticProducer(ring, rate=None, **kw) as p:
        return p.run(count=count)


@pytest.fixture(scope="module", autouse=True)
def _handlers_importable():
    sys.path.insert(0, str(TESTS))
    yield
    sys.path.remove(str(TESTS))


def test_filter_and_handler_counts(ring_name):
    from engine.loop import ConsumerEngine
    ring = Ring.create(ring_name, slots=1 << 14, slot_size=128, full_policy="wait")
    with ConsumerEngine(ring, name="ports", handler="engine_handlers:sum_ports",
                        filter="udp and dst port 30001 or dst port 30002", burst=64) as eng:
        publish_synthetic(ring, 10000, seed=4)
        rep = eng.run(count=10000, duration=30)
        slots = ring.slots[:10000]
        dports = (slots["payload"][:, 36].astype(np.int64) << 8) | slots["payload"][:, 37]
        want = dports[(dports == 30001) | (dports == 30002)]
        assert rep["status"] == "count reached"
        assert rep["received"] == 10000 and rep["delivered"] == 10000
        assert rep["handled"] == len(want) and rep["filtered_out"] == 10000 - len(want)
        assert 0 < len(want) < 10000
        assert eng.state[0] == want.sum() and eng.state[1] == len(want)
        assert rep["latency_ns"]["count"] == len(want) and rep["handler_errors"] == 0
    ring.close()


def test_handler_errors_are_counted_and_the_loop_goes_on(ring_name):
    from engine.loop import ConsumerEngine
    ring = Ring.create(ring_name, slots=1 << 13, slot_size=128)
    state = np.zeros(4, np.int64)
    state[0] = 1000
    with ConsumerEngine(ring, name="fail", handler="engine_handlers:fail_on_seq_multiple",
                        burst=16, state=state) as eng:
        publish_synthetic(ring, 4000)
        rep = eng.run(count=4000, duration=30)
    assert rep["received"] == 4000 and rep["delivered"] == 4000
    bad_bursts = 3                                   # seq 1000, 2000, 3000 (bursts of 16)
    assert rep["handler_errors"] == 16 * bad_bursts
    assert rep["handled"] == 4000 - 16 * bad_bursts == state[1]
    with ConsumerEngine(ring, name="half", handler="engine_handlers:handle_half",
                        burst=10) as eng:
        publish_synthetic(ring, 100)
        rep = eng.run(count=100, duration=30)
    assert rep["handled"] + rep["handler_errors"] == 100 and rep["handler_errors"] >= 50
    ring.close()


def test_handler_can_stop_the_loop(ring_name):
    from engine.loop import ConsumerEngine
    ring = Ring.create(ring_name, slots=1 << 12, slot_size=128)
    state = np.zeros(4, np.int64)
    state[0] = 100
    with ConsumerEngine(ring, name="stop", handler="engine_handlers:stop_after", burst=8,
                        state=state) as eng:
        publish_synthetic(ring, 1000)
        rep = eng.run(duration=30)
    assert rep["status"] == "handler asked to stop" and 100 <= rep["received"] < 108
    ring.close()


def test_lossy_ring_counts_laps(ring_name):
    from engine.loop import ConsumerEngine
    ring = Ring.create(ring_name, slots=256, slot_size=128, mode="lossy")
    with ConsumerEngine(ring, name="lossy", burst=32, filter="udp") as eng:
        publish_synthetic(ring, 5000)               # laps the consumer many times over
        rep = eng.run(duration=2)
    assert rep["received"] + rep["lost"] == 5000
    assert rep["lost"] >= 5000 - 256 and rep["received"] > 0
    ring.close()


def test_stop_flag_from_another_process(ring_name):
    from engine.loop import ConsumerEngine
    ring = Ring.create(ring_name, slots=256, slot_size=128)
    with ConsumerEngine(ring, name="idle", idle="backoff", max_sleep_us=200) as eng:
        code = textwrap.dedent(f"""
            import sys, time
            sys.path.insert(0, {str(ROOT)!r})
            from shm.ring import Ring
            from engine.stats import StatsRegion
            r = Ring.open({ring_name!r})
            time.sleep(0.5)
            StatsRegion.open_existing(r).request_stop({eng.index})
        """)
        p = subprocess.Popen([sys.executable, "-c", code])
        t0 = time.monotonic()
        rep = eng.run(duration=20)
        took = time.monotonic() - t0
        p.wait(timeout=20)
    assert rep["status"] == "stop requested" and took < 5
    ring.close()


def _attach_and_mark(ring_name, k, start):
    """One of test_concurrent_attach's processes: attach the ring's stats region the moment
    ``start`` opens, stamp line ``k`` with its pid."""
    ring = Ring.open(ring_name)
    start.wait(30)
    S.StatsRegion.attach(ring).block(k)[S.W_PID] = os.getpid()
    ring.close()


def test_consumers_attaching_together_share_one_stats_region(ring_name):
    """Consumers that start at once on a fresh ring (the market demo's two strategies) must all
    count into the one stats region ``hugering stat`` and stop requests read.  Each builds the
    region when it finds none; unserialised, a later builder's rename orphaned an earlier one's
    file, and that consumer never saw its stop request.  Eight processes race, released by one
    event; every line must show its process's pid afterwards (repeated: the race is timing)."""
    import multiprocessing as mp
    ctx = mp.get_context("fork")
    n = 8
    for attempt in range(6):
        ring = Ring.create(ring_name, slots=64, slot_size=64, max_consumers=n)
        start = ctx.Event()
        procs = [ctx.Process(target=_attach_and_mark, args=(ring_name, k, start))
                 for k in range(n)]
        for p in procs:
            p.start()
        time.sleep(0.3)                      # all of them opened the ring and wait
        start.set()
        for p in procs:
            p.join(30)
        assert [p.exitcode for p in procs] == [0] * n
        region = S.StatsRegion.open_existing(ring)
        pids = [int(region.block(k)[S.W_PID]) for k in range(n)]
        assert pids == [p.pid for p in procs], f"attempt {attempt}: lines {pids}"
        del region
        ring.close()
        Ring.remove(ring_name)
        S.remove(ring_name)


def test_backoff_idles_without_burning_the_cpu(ring_name):
    from engine.loop import ConsumerEngine
    ring = Ring.create(ring_name, slots=256, slot_size=128)
    used = {}
    for idle in ("busy", "backoff"):
        with ConsumerEngine(ring, name=idle, idle=idle, spin=100, max_sleep_us=1000) as eng:
            c0 = time.process_time()
            eng.run(duration=1.0)
            used[idle] = time.process_time() - c0
    # ratios, not absolutes: on the shared 2-vCPU VM the busy loop may get half a cpu
    assert used["backoff"] < 0.25 and used["busy"] > 3 * used["backoff"], used
    ring.close()


# --- acceptance: stat --json from another process equals the consumer's own counters -----------
CONSUMER_SCRIPT = textwrap.dedent("""
    import json, sys
    sys.path[:0] = [sys.argv[1], sys.argv[1] + "/tests"]
    import numpy as np
    from engine.loop import ConsumerEngine
    name, count, out = sys.argv[2], int(sys.argv[3]), sys.argv[4]
    state = np.zeros(count + 1, np.int64)
    eng = ConsumerEngine(name, name="acceptance", handler="engine_handlers:record_latencies",
                         filter="udp", burst=32, state=state)
    print("ready", flush=True)
    rep = eng.run(count=count, duration=240)
    np.save(out, state[1:1 + state[0]])
    eng.close()
    print(json.dumps(rep), flush=True)
""")


def test_stat_json_equals_the_consumers_final_counters(ring_name, tmp_path):
    n = 1_000_000
    Ring.create(ring_name, slots=1 << 14, slot_size=128, full_policy="wait").close()
    out = tmp_path / "lat.npy"
    cons = subprocess.Popen([sys.executable, "-c", CONSUMER_SCRIPT, str(ROOT), ring_name, str(n),
                             str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert cons.stdout.readline().strip() == "ready"
        prod = run_cli("synth", ring_name, "--rate", "2M", "--count", str(n), "--json",
                       timeout=300)
        assert prod.returncode == 0, prod.stderr
        assert json.loads(prod.stdout)["dropped"] == 0
        own = json.loads(cons.stdout.readline())
        assert cons.wait(timeout=60) == 0
    finally:
        cons.kill()
    st = run_cli("stat", ring_name, "--json")
    assert st.returncode == 0, st.stderr
    snap = json.loads(st.stdout)
    (theirs,) = [c for c in snap["consumers"] if c["pid"] == own["pid"]]
    assert theirs["ring_state"] == "left" and theirs["engine_state"] == "stopped"
    for key in ("received", "filtered_out", "handled", "handler_errors", "lost", "bursts",
                "last_seq"):
        assert theirs[key] == own[key], key
    assert theirs["latency_ns"] == own["latency_ns"]
    assert own["received"] == own["handled"] == n and own["last_seq"] == n - 1
    # the histogram's percentiles against the raw samples of the same run
    raw = np.sort(np.load(out))
    lat = own["latency_ns"]
    assert len(raw) == n == lat["count"] and raw.sum() == lat["mean"] * n
    assert raw[0] == max(lat["min"], 1) or raw[0] == lat["min"]
    assert raw[-1] == lat["max"]
    for q, key in ((50, "p50"), (90, "p90"), (99, "p99"), (99.9, "p99_9"), (99.99, "p99_99")):
        exact = int(raw[max(1, int(np.ceil(q / 100 * n - 1e-9))) - 1])
        assert exact <= lat[key] <= exact * (1 + lat["relative_error"]) + 1, (key, exact, lat)


# --- acceptance: no NRT allocation in the full loop ------------------------------------------
NRT_SCRIPT = textwrap.dedent("""
    import json, sys
    sys.path[:0] = [sys.argv[1], sys.argv[1] + "/tests"]
    import numpy as np
    from numba.core.runtime import rtsys
    from shm.ring import Ring
    from engine.loop import ConsumerEngine
    from engine.producers.synthetic import SyntheticProducer
    name = sys.argv[2]
    ring = Ring.create(name, slots=1 << 17, slot_size=128)
    eng = ConsumerEngine(ring, name="nrt", handler="examples.strategy:on_burst",
                         filter="udp and dst portrange 30001-30004", burst=32,
                         state=np.zeros(8, np.int64))
    prod = SyntheticProducer(ring, rate=None)

    def stats():
        s = rtsys.get_allocation_stats()
        return [s.alloc, s.free, s.mi_alloc, s.mi_free]

    def rnd(n):
        prod.run(count=n)
        before = stats()
        rep = eng.run(count=n, duration=60, chunk_ns=10**12)
        return [a - b for a, b in zip(stats(), before)], rep["received"]

    rnd(1000)
    small, a = rnd(10000)
    large, b = rnd(80000)
    print(json.dumps({"small": small, "large": large, "received": [a, b],
                      "handled": int(eng.state[0])}))
    prod.close(); eng.close(); ring.close(); Ring.remove(name)
""")


def test_full_loop_makes_no_nrt_allocations(ring_name):
    env = dict(os.environ, NUMBA_NRT_STATS="1")
    p = subprocess.run([sys.executable, "-c", NRT_SCRIPT, str(ROOT), ring_name],
                       capture_output=True, text=True, env=env, timeout=600, cwd=ROOT)
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout.strip().splitlines()[-1])
    assert r["received"] == [11000, 91000] and r["handled"] > 0, r
    assert r["small"] == r["large"], r                 # nothing scales with packets
    assert r["large"][0] == r["large"][1], r           # and nothing leaks
