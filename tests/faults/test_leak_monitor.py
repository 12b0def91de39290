"""The leak monitor (``engine.leak``, the seed's scenario B): slots and source buffers outstanding,
an alarm when they grow without bound, in ``hugering stat`` and as an API.

Leaks are injected for real: a consumer process that takes slots and never releases them, a
source whose buffer pool leaks (a test-only pool, ``leak_pool_worker.py``, writing the ring's
source_stats line as a producer does), and a real AF_XDP socket whose UMEM frames pile up
behind a ring nobody drains.  Each test also shows the alarm staying quiet for the healthy
version, and clearing once the leak stops.
"""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from engine.leak import LeakMonitor, verdict
from faultkit import HERE, HUGERING, PYTHON, ROOT, soak_worker, wait_until
from shm import Ring
from shm import layout as L

pytestmark = pytest.mark.timeout(240)


def test_the_rule_against_hand_made_series():
    """``verdict`` is the module docstring's rule; these series decide each clause."""
    size = 100
    assert verdict([10, 20, 30, 40, 60], size) == "growing"          # steady rise past the floor
    assert verdict([10, 20, 30, 40, 45], size) is None               # still below the floor
    assert verdict([55, 60, 58, 70, 80], size) is None               # it fell back once
    assert verdict([60, 60, 60, 60, 60], size) is None               # high but flat
    assert verdict([60, 60, 60, 60, 60.5], size) is None             # rose less than 1
    assert verdict([100, 100, 100, 100, 100], size) == "exhausted"   # all in use all along
    assert verdict([99, 100, 100, 100, 100], size) == "growing"      # the last step of a leak
    assert verdict([51, 51, 51, 51, 52], size, min_rise=0.02) is None
    assert verdict([], size) is None and verdict([70, 80], 0) is None


def test_the_alarm_latches_until_the_count_falls_below_the_floor(ring_name):
    ring = Ring.create(ring_name, slots=64, slot_size=64, shm=True)
    try:
        mon = LeakMonitor(ring, interval_s=0.01, window=3)
        c = ring.consumer()
        seen = []
        mon.on_change = lambda name, change, rep: seen.append((name, change))
        with ring.producer() as p:
            for n in (10, 20, 30, 4):         # 40 outstanding, then 64: full
                p.publish([b"x" * 60] * n)
                mon.sample()
            assert mon.report()["slots"]["reason"] == "growing"
            assert seen == [("slots", "raised")]
            for _ in range(5):                # full and flat: still in alarm (latched)
                mon.sample()
            assert mon.report()["alarm"]
            c.poll(64)
            c.release()                       # drained: below the floor
            mon.sample()
            assert not mon.report()["alarm"] and seen[-1] == ("slots", "cleared")
        c.close()
    finally:
        ring.close()


def _stat(name: str, count: int, interval: float = 0.1, window: int = 5):
    """``hugering stat --json --count``: a process that prints one snapshot per line."""
    return subprocess.Popen([HUGERING, "stat", name, "--json", "--count", str(count),
                             "--interval", str(interval), "--leak-window", str(window)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=str(ROOT))


def _snapshots(p: subprocess.Popen) -> list[dict]:
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    return [json.loads(line) for line in out.splitlines()]


HOLDER = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, sys.argv[1])
    from shm.ring import Ring
    c = Ring.open(sys.argv[2]).consumer()
    print("ready", c.index, flush=True)
    while True:                 # takes a burst and never gives it back, nor polls again
        b = c.poll(64)
        if len(b):
            break
        time.sleep(0.001)
    print("holding", len(b), flush=True)
    time.sleep(600)
""")


@pytest.mark.fault("slot-leak", fault="a slot leak: a consumer that never releases",
                   injected="a live consumer process takes a burst and never releases it (ring "
                            "consumer timeout 60 s, so it is not evicted); a paced producer "
                            "goes on; then the consumer is killed",
                   expected="hugering stat --json and LeakMonitor raise the slots alarm while "
                            "the count rises to the capacity (not with a healthy consumer), and "
                            "clear it once the dead consumer is evicted")
def test_slots_never_released_raise_the_alarm(ring_name, hugetlbfs_or_shm, tmp_path, fault_row):
    cap = 4096
    ring = Ring.create(ring_name, slots=cap, slot_size=64, full_policy="wait",
                       consumer_timeout=60.0, max_consumers=4, shm=not hugetlbfs_or_shm,
                       hugetlbfs=hugetlbfs_or_shm)
    workers = []
    holder = None
    try:
        events = []
        mon = LeakMonitor(ring, interval_s=0.05, window=6,
                          on_change=lambda name, change, rep: events.append(
                              (name, change, rep[name]["value"])))
        healthy = soak_worker("consumer", ring_name, tmp_path, "healthy")
        workers.append(healthy)
        healthy.expect("ready", 120)
        prod = soak_worker("producer", ring_name, tmp_path, "producer", count=None, rate=3000)
        workers.append(prod)
        prod.expect("ready", 120)
        prod.send("go")
        mon.start()
        time.sleep(1.0)                        # healthy: nothing outstanding for long
        assert not mon.report()["alarm"], mon.report()
        stat = _stat(ring_name, count=25)
        stat.stdout.readline()                 # its first sample is taken: now leak
        holder = subprocess.Popen([PYTHON, "-c", HOLDER, str(ROOT), ring_name],
                                  stdout=subprocess.PIPE, text=True)
        assert holder.stdout.readline().startswith("ready")
        assert holder.stdout.readline().startswith("holding")
        snaps = _snapshots(stat)
        wait_until(lambda: ("slots", "raised", ) in [e[:2] for e in events], 10, "the alarm")
        last = snaps[-1]
        assert last["leak"]["alarm"] and last["leak"]["slots"]["alarm"], last["leak"]
        assert last["leak"]["slots"]["reason"] in ("growing", "exhausted")
        assert "LEAK SUSPECTED" in last["leak"]["slots"]["message"]
        rising = [s["leak"]["slots"]["value"] for s in snaps]
        assert rising[-1] >= cap // 2 and rising[-1] > rising[0]
        raised_at = next(e[2] for e in events if e[:2] == ("slots", "raised"))
        holder.kill()
        holder.wait()
        wait_until(lambda: ("slots", "cleared") in [e[:2] for e in events], 10,
                   "the alarm to clear after the eviction")
        assert int(ring.ctrl[L.PS_EVICTIONS]) == 1
        fault_row.observe(f"healthy 1 s: no alarm; leaking: stat --json alarm "
                          f"'{last['leak']['slots']['reason']}' at {rising[-1]:,} of {cap:,} "
                          f"slots (\"{last['leak']['slots']['message']}\"); API raised at "
                          f"{raised_at:,}, cleared after the consumer was killed and evicted")
    finally:
        if holder is not None and holder.poll() is None:
            holder.kill()
            holder.wait()
        mon.stop()
        for w in workers:
            w.close()
        ring.close()


@pytest.mark.fault("pool-leak", fault="a buffer-pool leak in the packet source",
                   injected="a test-only source whose pool of 4096 buffers loses 64 per 20 ms "
                            "(and a healthy one whose use wanders between 40 and 80 %), written "
                            "to the ring's source_stats line",
                   expected="hugering stat --json shows the source line and a pool alarm for "
                            "the leak (growing, then exhausted with allocation failures); none "
                            "for the healthy pool")
@pytest.mark.parametrize("kind", ["leaking", "healthy"])
def test_a_leaking_pool_raises_the_alarm_and_a_healthy_one_does_not(ring_name, fault_row, kind):
    Ring.create(ring_name, slots=64, slot_size=64, shm=True).close()
    src = subprocess.Popen([PYTHON, str(HERE / "leak_pool_worker.py"), ring_name, kind, "5"],
                           stdout=subprocess.PIPE, text=True)
    try:
        assert src.stdout.readline().strip() == "ready"
        snaps = _snapshots(_stat(ring_name, count=25, interval=0.1, window=8))
    finally:
        src.kill()
        src.wait()
    pool = [s["leak"].get("pool") for s in snaps]
    assert all(p is not None for p in pool[1:]), "the pool was not watched"
    last = snaps[-1]
    assert last["source"]["pool_size"] == 4096 and last["source"]["src_stats_ns"] > 0
    reasons = {p["reason"] for p in pool if p and p["alarm"]}
    if kind == "leaking":
        assert last["leak"]["alarm"] and "growing" in reasons, [p["value"] for p in pool if p]
        assert last["source"]["pool_in_use"] == 4096 and last["source"]["src_nombuf"] > 0
        first = next(p for p in pool if p and p["alarm"])
        fault_row.observe(f"leaking: pool alarm 'growing' raised at {first['value']:,} of 4,096 "
                          f"in use; at the end {last['source']['pool_in_use']:,} in use, "
                          f"{last['source']['src_nombuf']:,} allocation failures, alarm latched")
    else:
        assert not reasons and not last["leak"]["alarm"], [p["value"] for p in pool if p]
        values = [p["value"] for p in pool if p]
        fault_row.observe(f"healthy: {len(values)} samples between {min(values):,} and "
                          f"{max(values):,} in use: no alarm")


AFXDP_FRAMES = 256


@pytest.mark.fault("umem-leak", fault="AF_XDP UMEM frames held: the real source pool",
                   injected="an AF_XDP producer (256 UMEM frames) into a 16-slot lossless ring "
                            "whose only consumer never releases; 600 + 100 datagrams from the "
                            "peer; then the consumer is killed",
                   expected="source_stats fills from XDP_STATISTICS and the UMEM: every frame "
                            "in use, fill-ring-empty drops counted as missed / no buffer; the "
                            "pool alarm is raised, and clears once the ring drains")
def test_af_xdp_umem_frames_held_behind_a_full_ring_raise_the_alarm(ring_name, need_root,
                                                                   fault_row):
    sys.path.insert(0, str(HERE.parent))
    from test_afxdp import HostPeer
    with HostPeer() as hp, Ring.create(ring_name, slots=16, slot_size=2048, full_policy="wait",
                                       consumer_timeout=60.0) as ring:
        hp.ping()
        holder = subprocess.Popen([PYTHON, "-c", HOLDER, str(ROOT), ring_name],
                                  stdout=subprocess.PIPE, text=True)
        prod = subprocess.Popen([HUGERING, "afxdp", hp.host, "--ring", ring_name, "--frames",
                                 str(AFXDP_FRAMES), "--filter", "udp dst port 34001",
                                 "--duration", "60", "--json"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                cwd=str(ROOT))
        events = []
        mon = LeakMonitor(ring, interval_s=0.05, window=5,
                          on_change=lambda name, change, rep: events.append((name, change)))
        try:
            assert holder.stdout.readline().startswith("ready")
            wait_until(lambda: int(ring.ctrl[L.SS_STATS_NS]) > 0, 120, "the producer's first "
                       "source_stats (compile, attach)")
            assert int(ring.ctrl[L.SS_POOL_SIZE]) == AFXDP_FRAMES
            mon.start()
            stat = _stat(ring_name, count=30, interval=0.1, window=5)
            stat.stdout.readline()
            hp.send([(34001, b"u%d" % i) for i in range(600)])
            assert holder.stdout.readline().startswith("holding")
            # the 16 frames whose packets fitted in the ring went back to the fill ring, maybe
            # after the last datagram came; the kernel takes them again with the next ones
            hp.send([(34001, b"v%d" % i) for i in range(100)])
            snaps = _snapshots(stat)
            last = snaps[-1]
            src = last["source"]
            assert src["pool_size"] == AFXDP_FRAMES and src["pool_in_use"] == AFXDP_FRAMES, src
            assert src["src_nombuf"] > 0 and src["src_missed"] >= src["src_nombuf"], src
            assert src["src_packets"] == 16, src     # what fitted in the ring
            assert last["leak"]["alarm"] and last["leak"]["pool"]["alarm"], last["leak"]
            assert ("pool", "raised") in events
            holder.kill()
            holder.wait()
            wait_until(lambda: ("pool", "cleared") in events, 30, "the pool alarm to clear")
            in_use = int(ring.ctrl[L.SS_POOL_IN_USE])
            fault_row.observe(f"source line: {AFXDP_FRAMES} of {AFXDP_FRAMES} frames in use, "
                              f"{src['src_nombuf']} fill-ring-empty, {src['src_missed']} missed; "
                              f"stat alarm '{last['leak']['pool']['reason']}'; after the kill "
                              f"the ring drained, {in_use} in use, alarm cleared")
        finally:
            mon.stop()
            for p in (holder, prod):
                if p.poll() is None:
                    p.send_signal(signal.SIGINT)
                    try:
                        p.wait(timeout=10)
                    except subprocess.TimeoutExpired:
                        p.kill()
                        p.wait()
