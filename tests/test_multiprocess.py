"""The ring across processes: stamped (producer, seq) streams, lapping, kill -9, SIGSTOP and a
restarted producer.

Every test runs real processes (``tests/mp_workers.py``) on one ring and checks, from what each
consumer reports and from the ring's own counters, that

* lossless: every consumer sees every (producer, seq) exactly once and in order, also while
  another consumer is killed, stopped or evicted, and across a producer restart;
* lossy: fast consumers lose nothing, a lapped consumer never gets a torn slot, gets strictly
  increasing sequence numbers, and delivered + lost adds up to what was published;
* eviction: a dead or stopped consumer holds the producer back for at most the configured
  timeout, is counted once, and (when it comes back) notices, rejoins and counts its loss.

Workers spin a bounded number of times and then yield (two cores, four processes).  Numba's
cache for the workers lives in a directory keyed by the content of ``shm/`` and the workers, so
a change to a kernel can never be hidden by a stale cached caller that inlined the old one.
"""
from __future__ import annotations

import hashlib
import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

import pytest

from shm import Ring
from shm import layout as L
from tools import soak

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
WORKERS = HERE / "mp_workers.py"

pytestmark = pytest.mark.slow


def _cache_dir() -> str:
    h = hashlib.sha256()
    for p in sorted((ROOT / "shm").glob("*.py")) + [WORKERS]:
        h.update(p.name.encode() + b"\0" + p.read_bytes())
    h.update(sys.version.encode())
    return os.path.join(tempfile.gettempdir(),
                        f"hugering-mp-numba-{os.geteuid()}-{h.hexdigest()[:16]}")


ENV = dict(os.environ, NUMBA_CACHE_DIR=_cache_dir(), PYTHONUNBUFFERED="1")


WorkerDied = soak.WorkerError


class Worker(soak.Worker):
    """One ``mp_workers.py`` process (the soak tool's protocol): JSON events on its stdout,
    commands on its stdin, its stderr kept in ``logdir`` and quoted when an event is missing."""

    def __init__(self, role: str, logdir: Path, tag: str, **args):
        self.errpath = logdir / f"{tag}.stderr"
        self._err = open(self.errpath, "w+b")
        super().__init__(role, "", tag, env=ENV, stderr=self._err,
                         argv=[sys.executable, str(WORKERS), role, json.dumps(args)])

    def stderr_tail(self, n: int = 3000) -> str:
        try:
            return self.errpath.read_bytes()[-n:].decode(errors="replace")
        except OSError:
            return ""

    def detail(self) -> str:
        return f"; stderr:\n{self.stderr_tail()}"

    def close(self) -> None:
        super().close()
        self._err.close()


@pytest.fixture(scope="module")
def warm_cache(tmp_path_factory):
    """Compile the worker kernels once, in one process, before tests start four at a time."""
    logdir = tmp_path_factory.mktemp("mp-warmup")
    w = Worker("warmup", logdir, "warmup", ring=f"mpwarm{os.getpid()}")
    try:
        assert w.expect("result", timeout=300)["ok"]
    finally:
        w.close()


@pytest.fixture
def spawn(tmp_path, warm_cache):
    """Start workers; every one still running at the end of the test is SIGKILLed (stopped
    ones too) and reaped, whatever the outcome."""
    started: list[Worker] = []
    counter = iter(range(1000))

    def start(role: str, tag: str | None = None, **args) -> Worker:
        w = Worker(role, tmp_path, f"{tag or role}-{next(counter)}", **args)
        started.append(w)
        return w

    yield start
    for w in started:
        w.close()


def make_ring(name: str, backing: str | None, **kw) -> Ring:
    if backing is None or backing == "shm":
        return Ring.create(name, shm=True, **kw)
    return Ring.create(name, hugetlbfs=backing, **kw)


def wait_until(pred, timeout: float, what: str, interval: float = 0.005):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def assert_lossless(res: dict, prod: dict, tag: str) -> None:
    """A consumer (joined at 0) saw every (producer, seq) up to the end marker exactly once,
    in order, and its line agrees."""
    assert res["errors"] == 0, f"{tag}: {res['errors']} bad messages, first {res['first_error']}"
    assert res["overwritten"] == 0, f"{tag}: {res['overwritten']} slots overwritten while peeked"
    assert res["end"] == prod["final"] - 1, f"{tag}: end marker at {res['end']}, " \
        f"producer's last seq {prod['final'] - 1}"
    assert res["data"] == prod["final"] - 1, f"{tag}: {res}"
    assert res["rejoins"] == [] and res["line"]["lost"] == 0 and res["line"]["rejoins"] == 0, \
        f"{tag}: {res}"
    assert res["line"]["delivered"] == res["data"] + 1, f"{tag}: {res}"   # + the end marker


def start_stream(spawn, name, n_consumers, producer_args, consumer_role="consumer",
                 consumer_args=None):
    """Consumers first, joined before the producer publishes anything ('go')."""
    prod = spawn("producer", ring=name, id=1, **producer_args)
    consumers = []
    for i, extra in enumerate(consumer_args or [{}] * n_consumers):
        consumers.append(spawn(consumer_role, tag=f"c{i}", ring=name, **extra))
    ready = [c.expect("ready", timeout=60) for c in consumers]
    pready = prod.expect("ready", timeout=60)
    return prod, pready, consumers, ready


# --- (a) lossless broadcast, 1 producer -> 3 consumers ---------------------------------------
@pytest.mark.timeout(240)
@pytest.mark.parametrize("backing,count,slots", [
    ("hugetlbfs", 10**7, 1 << 16),
    ("shm", 10**6, 1 << 16),
    ("hugetlbfs", 5 * 10**5, 64),  # a tiny ring: the producer is held back on most bursts
], ids=["hugetlbfs-1e7", "shm-1e6", "hugetlbfs-tiny-5e5"])
def test_lossless_broadcast_every_seq_once_in_order(request, spawn, ring_name, backing, count,
                                                    slots):
    """1 producer -> 3 consumer processes that joined before it started: each sees every
    (producer, seq) exactly once and in order (checked in @njit, slot by slot, in place)."""
    where = request.getfixturevalue("hugetlbfs") if backing == "hugetlbfs" else "shm"
    ring = make_ring(ring_name, where, slots=slots, slot_size=64, mode="lossless",
                     full_policy="wait", max_consumers=4)
    try:
        # In the tiny ring, bursts of every size 1..32 (so that every fill level occurs), and
        # consumers re-read each peeked burst a few times before releasing it, so that a
        # producer overwriting a held slot is caught in the act.
        tiny = slots < 1024
        cargs = [{"hold_spins": 8 if tiny else 0, "vary": tiny}] * 3
        prod, pready, consumers, ready = start_stream(
            spawn, ring_name, 3, dict(count=count, burst=32, chunk=1 << 16, vary=tiny),
            consumer_args=cargs)
        assert pready["resume"] == 0 and all(r["cursor"] == 0 for r in ready)
        t0 = time.monotonic()
        prod.send("go")
        pres = prod.expect("result", timeout=200)
        results = [c.expect("result", timeout=60) for c in consumers]
        elapsed = time.monotonic() - t0
        assert pres["final"] == count + 1 and pres["attempted"] == count + 1
        assert pres["published"] == count + 1 and pres["dropped"] == 0
        assert pres["evictions"] == 0
        for i, res in enumerate(results):
            assert_lossless(res, pres, f"consumer {i}")
            assert res["data"] == count
        print(f"\n{backing}, {slots} slots: {count} messages to 3 consumers in {elapsed:.2f} s "
              f"({count / elapsed / 1e6:.2f} M msg/s per consumer), "
              f"full_waits {pres['full_waits']}")
    finally:
        ring.close()


# --- (b) lossy: one slow consumer is lapped, two fast ones lose nothing ----------------------
@pytest.mark.timeout(180)
def test_lossy_slow_consumer_is_lapped_never_torn(spawn, ring_name, hugetlbfs):
    """Lossy ring, two fast consumers and one that sleeps after every message: the fast ones
    lose nothing; the slow one is lapped (lost > 0), never gets a torn copy, gets strictly
    increasing sequence numbers, and its delivered + lost is everything that was published."""
    cap, count = 1 << 15, 1_500_000
    ring = make_ring(ring_name, hugetlbfs, slots=cap, slot_size=128, mode="lossy",
                     max_consumers=4)
    try:
        prod, pready, consumers, ready = start_stream(
            spawn, ring_name, 3, dict(count=count, burst=32, chunk=2048, rate=1_000_000),
            consumer_role="lossy_consumer",
            consumer_args=[{"burst": 32}, {"burst": 32}, {"slow_sleep": 0.0001}])
        fast, slow = consumers[:2], consumers[2]
        # The producer paces itself (a feed at 1 M msg/s) and, as a source would be
        # flow-controlled upstream, never lets the *fast* consumers fall half a ring behind: on
        # two shared cores a descheduled fast reader must not turn into a false loss.  Nothing
        # holds it back for the slow one.
        prod.send("go " + json.dumps({"guard": [r["index"] for r in ready[:2]],
                                      "max_lag": cap // 2}))
        pres = prod.expect("result", timeout=150)
        slow.send("fast")                  # drain the rest quickly once the stream is over
        results = [c.expect("result", timeout=60) for c in consumers]
        total = pres["final"]              # sequence numbers 0 .. final-1, end marker included
        assert pres["final"] == count + 1
        for i, res in enumerate(results[:2]):
            tag = f"fast consumer {i}"
            assert res["torn"] == 0 and res["nonincreasing"] == 0, f"{tag}: {res}"
            assert res["gaps"] == 0 and res["line"]["lost"] == 0, f"{tag}: {res}"
            assert res["delivered"] == total and res["end"] == total - 1, f"{tag}: {res}"
        res = results[2]
        assert res["torn"] == 0, f"slow consumer got torn copies: {res['first_torn']}"
        assert res["nonincreasing"] == 0, f"slow consumer went backwards: {res}"
        lost = int(ring.consumer_lines[ready[2]["index"]]["lost"])
        assert lost > 0, f"the slow consumer was never lapped: {res}"
        assert res["delivered"] + lost == total, f"delivered {res['delivered']} + lost {lost}"
        assert res["gap_total"] == lost, "the gaps it saw are not what its line counts as lost"
        assert res["line"]["delivered"] == res["delivered"]
        assert res["end"] == total - 1
        # every jump it saw was a resynchronisation after a lap, which its line must count
        assert res["line"]["rejoins"] >= res["gaps"], (
            f"the slow consumer jumped forward {res['gaps']} times but its line counts "
            f"rejoins={res['line']['rejoins']}")
        print(f"\nslow consumer: delivered {res['delivered']}, lost {lost} in "
              f"{res['gaps']} laps; producer guard waits {pres['guard_waits']}")
    finally:
        ring.close()


@pytest.mark.timeout(180)
def test_lossy_lapped_copies_race_the_producer_never_torn(spawn, ring_name, hugetlbfs):
    """The seqlock under fire: an unpaced producer laps two copying consumers over and over in
    a small ring of large slots, so the producer's write front keeps crossing slots that a
    consumer is copying.  Whatever they deliver must be untorn and strictly increasing, and
    delivered + lost must add up to what was published."""
    cap, count = 1 << 12, 5_000_000
    ring = make_ring(ring_name, hugetlbfs, slots=cap, slot_size=256, mode="lossy",
                     max_consumers=4)
    try:
        prod, pready, consumers, ready = start_stream(
            spawn, ring_name, 2, dict(count=count, burst=32, chunk=1 << 16),
            consumer_role="lossy_consumer", consumer_args=[{"burst": 256}, {"burst": 64}])
        prod.send("go")
        pres = prod.expect("result", timeout=150)
        results = [c.expect("result", timeout=60) for c in consumers]
        total = pres["final"]
        laps = []
        for i, res in enumerate(results):
            tag = f"consumer {i}"
            lost = res["line"]["lost"]
            assert res["torn"] == 0, f"{tag}: {res['torn']} torn copies, first " \
                f"[seq, word, value] = {res['first_torn']}"
            assert res["nonincreasing"] == 0, f"{tag}: {res}"
            assert res["delivered"] + lost == total, f"{tag}: {res}"
            assert res["gap_total"] == lost and res["end"] == total - 1, f"{tag}: {res}"
            laps.append((res["delivered"], lost, res["gaps"]))
        assert any(lost > 0 for _, lost, _ in laps), "nobody was lapped: the test proved nothing"
        print(f"\nlapped copiers (delivered, lost, jumps): {laps}")
    finally:
        ring.close()


# --- (c) kill -9 of a consumer mid-stream ----------------------------------------------------
GAP_NS = 20_000_000     # the producer records every pause between two submits longer than this


def _stall_after(pres: dict, t_kill: int) -> tuple[int, int]:
    """(eviction time, end of the publish gap during which it happened), CLOCK_REALTIME ns."""
    assert pres["evict_t"], f"the producer never saw an eviction: {pres}"
    t_ev = pres["evict_t"][0]
    for start, end in pres["gaps"]:
        if start <= t_ev <= end:
            return t_ev, end
    # no gap longer than the recording threshold around it: publishing went on within that
    return t_ev, t_ev + GAP_NS


@pytest.mark.timeout(180)
@pytest.mark.parametrize("policy,reap", [("wait", False), ("drop", False), ("wait", True)],
                         ids=["wait-zombie", "drop-zombie", "wait-reaped"])
def test_killed_consumer_is_evicted_within_timeout(spawn, ring_name, hugetlbfs, policy, reap):
    """kill -9 a consumer.  Unreaped, its pid still exists (a zombie), so only the timeout can
    evict it; reaped, the dead pid is noticed at once.  Either way the producer publishes again
    within the timeout (+ margin), counts one eviction, and the other consumers lose nothing."""
    timeout = 2.0 if reap else 0.3
    margin = 0.3
    cap, count = 1 << 14, 3_000_000
    ring = make_ring(ring_name, hugetlbfs, slots=cap, slot_size=64, mode="lossless",
                     full_policy=policy, max_consumers=4, consumer_timeout=timeout)
    try:
        pargs = dict(count=count, burst=32, chunk=4096, gap_s=GAP_NS / 1e9)
        if policy == "drop":
            pargs["rate"] = 3_000_000       # a source: frames arrive whether or not there is room
        prod, pready, consumers, ready = start_stream(spawn, ring_name, 3, pargs)
        victim, survivors = consumers[0], consumers[1:]
        vline = ring.consumer_lines[ready[0]["index"]]
        prod.send("go")
        wait_until(lambda: int(vline["cursor"]) > count // 10, 60, "the victim to get going")
        t_kill = time.time_ns()
        victim.kill()
        if reap:
            victim.reap()
        pres = prod.expect("result", timeout=120)
        results = [c.expect("result", timeout=60) for c in survivors]
        t_ev, t_resume = _stall_after(pres, t_kill)
        stall = (t_resume - t_kill) / 1e9
        assert pres["evictions"] == 1, pres
        assert int(vline["state"]) == L.CONSUMER_EVICTED
        assert stall <= timeout + margin, f"producer stalled {stall:.3f} s (timeout {timeout})"
        if reap:
            assert stall < timeout / 2, f"a dead pid took {stall:.3f} s to evict"
        else:
            assert stall >= timeout / 2, f"evicted {stall:.3f} s after the kill, before the " \
                f"{timeout} s timeout, although its pid still existed"
        for i, res in enumerate(results):
            assert_lossless(res, pres, f"surviving consumer {i}")
        assert pres["published"] + pres["dropped"] == pres["attempted"], pres
        if policy == "wait":
            assert pres["dropped"] == 0 and pres["published"] == count + 1
        else:
            assert pres["attempted"] == count + 1 and pres["dropped"] > 0
        print(f"\n{policy}{' reaped' if reap else ''}: stall {stall * 1e3:.0f} ms after kill "
              f"(timeout {timeout * 1e3:.0f} ms), published {pres['published']}, "
              f"dropped {pres['dropped']}")
    finally:
        ring.close()


# --- (d) SIGSTOP / SIGCONT: evicted, notices, rejoins, counts the gap ------------------------
@pytest.mark.timeout(180)
@pytest.mark.parametrize("how", ["sigstop", "hold-burst", "hold-between"])
def test_stopped_consumer_is_evicted_then_rejoins_counting_loss(spawn, ring_name, hugetlbfs,
                                                                how):
    """A consumer that stops (SIGSTOP; or stuck in its handler, holding a peeked burst or
    between bursts) is evicted after the timeout.  When it goes on it notices (release or peek
    return -1: the holding variants pin down which), rejoins at the producer's cursor, counts
    exactly the sequence numbers it skipped in ``lost``, and receives in order after the gap."""
    timeout = 0.3
    cap = 1 << 14
    ring = make_ring(ring_name, hugetlbfs, slots=cap, slot_size=64, mode="lossless",
                     full_policy="wait", max_consumers=4, consumer_timeout=timeout)
    try:
        prod, pready, consumers, ready = start_stream(
            spawn, ring_name, 2, dict(count=None, burst=32, chunk=4096))
        victim, witness = consumers
        vline = ring.consumer_lines[ready[0]["index"]]
        prod.send("go")
        wait_until(lambda: int(vline["cursor"]) > 200_000, 60, "the victim to get going")
        if how == "sigstop":
            t_stop = time.time_ns()
            victim.signal(signal.SIGSTOP)
        else:
            victim.send("hold " + how.split("-")[1])
            held = victim.expect("holding", timeout=30)
            t_stop = time.time_ns()
            assert (held["peeked"] > 0) == (how == "hold-burst")
        wait_until(lambda: int(ring.ctrl[L.PS_EVICTIONS]) >= 1, timeout + 5, "the eviction")
        t_evicted = time.time_ns()
        assert int(vline["state"]) == L.CONSUMER_EVICTED
        behind = int(ring.ctrl[L.P_CURSOR])
        # let the producer lap the stopped consumer's position several times
        wait_until(lambda: int(ring.ctrl[L.P_CURSOR]) > behind + 4 * cap, 30, "more traffic")
        if how == "sigstop":
            victim.signal(signal.SIGCONT)
        else:
            victim.send("resume")
        wait_until(lambda: int(vline["rejoins"]) == 1, 30, "the victim to rejoin")
        after = int(vline["cursor"])
        wait_until(lambda: int(vline["cursor"]) > after + 100_000, 60, "traffic after rejoin")
        prod.send("stop")
        pres = prod.expect("result", timeout=60)
        vres, wres = (c.expect("result", timeout=60) for c in consumers)
        assert (t_evicted - t_stop) / 1e9 <= timeout + 1.0
        assert pres["evictions"] == 1, pres
        assert_lossless(wres, pres, "witness")
        # the victim: one rejoin, then in order to the end; its line counts exactly the gap
        assert vres["errors"] == 0, f"victim: {vres['errors']} bad, first {vres['first_error']}"
        assert len(vres["rejoins"]) == 1, vres["rejoins"]
        rj = vres["rejoins"][0]
        if how != "sigstop":
            assert rj["via"] == {"hold-burst": "release", "hold-between": "peek"}[how], rj
        gap = rj["cursor"] - rj["expected"]   # sequence numbers it never accepted
        assert gap > 4 * cap
        assert vres["end"] == pres["final"] - 1
        assert vres["data"] + gap == pres["final"] - 1, vres
        assert vres["data"] > rj["data_before"], "nothing received after the rejoin"
        line = vres["line"]
        assert line["rejoins"] == 1
        assert line["lost"] == gap, (
            f"the victim skipped {gap} sequence numbers (noticed in {rj['via']}, "
            f"{rj['discarded']} peeked slots discarded) but its line counts lost={line['lost']}")
        assert line["delivered"] == vres["data"] + 1, (
            f"line delivered={line['delivered']} but the victim accepted {vres['data']} + end")
        print(f"\n{how}: victim evicted {(t_evicted - t_stop) / 1e6:.0f} ms after it stopped; "
              f"noticed in {rj['via']} ({rj['discarded']} slots discarded), gap {gap}, then "
              f"{vres['data'] - rj['data_before']} more in order")
    finally:
        ring.close()


# --- (d) a restarted producer resumes at the same cursor -------------------------------------
@pytest.mark.timeout(180)
def test_restarted_producer_resumes_at_cursor(spawn, ring_name, hugetlbfs):
    """kill -9 the producer while the ring is full of unread slots, start another on the same
    ring: it resumes at the published cursor, never overwrites what the consumers have not
    read, and the consumers see one continuous sequence across the two producers."""
    cap, count2 = 1 << 14, 1_000_000
    ring = make_ring(ring_name, hugetlbfs, slots=cap, slot_size=64, mode="lossless",
                     full_policy="wait", max_consumers=4, consumer_timeout=2.0)
    try:
        prod1, pready, consumers, ready = start_stream(
            spawn, ring_name, 2, dict(count=None, burst=32, chunk=4096))
        prod2 = spawn("producer", tag="producer2", ring=ring_name, id=2, count=count2,
                      burst=32, chunk=4096, wait_attach=True, wait_go=False)
        prod2.expect("spawned", timeout=60)
        lines = [ring.consumer_lines[r["index"]] for r in ready]
        prod1.send("go")
        wait_until(lambda: min(int(ln["cursor"]) for ln in lines) > 300_000, 60, "traffic")
        for c in consumers:                 # hold the consumers so the ring is full of
            c.signal(signal.SIGSTOP)        # unread slots when the producer dies
        wait_until(lambda: int(ring.ctrl[L.P_CURSOR]) - min(int(ln["cursor"]) for ln in lines)
                   == cap, 10, "a full ring")
        prod1.kill()
        prod1.reap()
        cursor = int(ring.ctrl[L.P_CURSOR])
        assert cursor - min(int(ln["cursor"]) for ln in lines) == cap
        prod2.send("attach")
        p2 = prod2.expect("ready", timeout=30)
        time.sleep(0.1)                     # producer 2 runs against the full ring
        for c in consumers:
            c.signal(signal.SIGCONT)
        pres = prod2.expect("result", timeout=120)
        results = [c.expect("result", timeout=60) for c in consumers]
        assert p2["resume"] == cursor, f"resumed at {p2['resume']}, the cursor was {cursor}"
        assert pres["final"] == cursor + count2 + 1
        assert pres["evictions"] == 0
        for i, res in enumerate(results):
            tag = f"consumer {i}"
            assert res["errors"] == 0, f"{tag}: {res['errors']} bad messages, first " \
                f"[expected, stamp, producer, seq word, attempt] = {res['first_error']}"
            assert res["switches"] == 1 and res["switch_seq"] == cursor, f"{tag}: {res}"
            assert res["producer"] == 2
            assert_lossless(res, pres, tag)
    finally:
        ring.close()


@pytest.mark.timeout(120)
def test_clean_handover_of_consumer_line_and_producer(spawn, ring_name, hugetlbfs):
    """Processes that exit cleanly hand over: a consumer that joins the line another one left
    starts with fresh counters, and a producer attached after one detached resumes at its
    cursor.  Both streams are checked end to end."""
    n1, n2 = 200_000, 300_000
    ring = make_ring(ring_name, hugetlbfs, slots=1 << 12, slot_size=64, mode="lossless",
                     full_policy="wait", max_consumers=1)
    try:
        prod, _, (c1,), (r1,) = start_stream(spawn, ring_name, 1, dict(count=n1))
        prod.send("go")
        p1 = prod.expect("result", timeout=60)
        res1 = c1.expect("result", timeout=60)
        assert prod.reap() == 0 and c1.reap() == 0
        assert_lossless(res1, p1, "first consumer")
        assert int(ring.header["producer_pid"]) == 0, "the producer did not detach"
        prod2 = spawn("producer", tag="producer2", ring=ring_name, id=2, count=n2)
        c2 = spawn("consumer", tag="c-second", ring=ring_name, producer=2)
        r2 = c2.expect("ready", timeout=60)
        assert r2["index"] == r1["index"] and r2["cursor"] == p1["final"]
        assert prod2.expect("ready", timeout=60)["resume"] == p1["final"]
        prod2.send("go")
        p2 = prod2.expect("result", timeout=60)
        res2 = c2.expect("result", timeout=60)
        assert res2["errors"] == 0 and res2["data"] == n2 and res2["end"] == p2["final"] - 1
        assert res2["line"]["delivered"] == n2 + 1, (
            f"the second consumer's line counts delivered={res2['line']['delivered']}, but it "
            f"received {n2} + the end marker: counters left over from the line's last owner")
    finally:
        ring.close()
