"""Process faults, injected for real: kill -9 and SIGSTOP of consumers and of the producer, a
restarted producer, a consumer that crashes inside its handler.

The workers are ``tools/soak.py``'s stamped producer and checking consumers (every message is
``(producer id, seq)``, each consumer classifies what it sees as in order, lost, late, repeated
or corrupt) and, where the engine itself is under test, ``engine_worker.py`` (``ConsumerEngine``
with ``stamp_handler``).  Kill points are drawn at random (seeded, printed in the observation)
inside the stream.  Eviction and resume times are taken by this process polling the ring's
shared counters, so they include everything a real deployment would see.
"""
from __future__ import annotations

import os
import random
import signal
import time

import pytest

from faultkit import engine_worker, soak_worker, stderr_of, wait_until
from shm import Ring
from shm import layout as L

pytestmark = pytest.mark.timeout(240)
SEED = int(os.environ.get("HUGERING_FAULT_SEED", "0")) or random.randrange(1, 10 ** 6)


def _ring(name, hugetlbfs, **kw) -> Ring:
    if hugetlbfs:
        return Ring.create(name, hugetlbfs=hugetlbfs, **kw)
    return Ring.create(name, shm=True, **kw)


def _start(tmp_path, name, n_consumers, producer_args, consumer_role="consumer",
           consumer_args=None):
    cons = [soak_worker(consumer_role, name, tmp_path, f"c{i}", **(consumer_args or {}))
            for i in range(n_consumers)]
    prod = soak_worker("producer", name, tmp_path, "producer", **producer_args)
    ready = [c.expect("ready", 120) for c in cons]
    prod.expect("ready", 120)
    return prod, cons, ready


def _assert_whole(res: dict, sent: int, tag: str) -> None:
    """A consumer that joined at 0 got every (producer, seq), once, in order, whole."""
    bad = {k: res[k] for k in ("lost", "duplicated", "reordered", "corrupt") if res[k]}
    assert not bad, f"{tag}: {bad}, first bad seq {res['first_bad']}"
    assert res["data"] == sent and res["end"] == sent, f"{tag}: {res}"
    assert res["line"]["lost"] == 0 and res["line"]["rejoins"] == 0, f"{tag}: {res['line']}"


@pytest.fixture
def workers():
    started = []
    yield started
    for w in started:
        w.close()


# --- consumers -----------------------------------------------------------------------------------
@pytest.mark.fault("consumer-kill", fault="kill -9 of a consumer, lossless ring",
                   injected="SIGKILL at a random point of a 1 -> 3 stream (full policy wait, "
                            "consumer timeout 0.5 s); reaped at once, or left a zombie",
                   expected="the producer resumes within its timeout (a reaped pid at once), "
                            "counts one eviction; the other consumers lose nothing")
@pytest.mark.parametrize("reaped", [True, False], ids=["reaped", "zombie"])
def test_killed_consumer_is_evicted_and_the_others_lose_nothing(ring_name, hugetlbfs_or_shm, tmp_path,
                                                                workers, fault_row, reaped):
    rng = random.Random(SEED + reaped)
    timeout, n, cap = 0.5, 2_000_000, 1 << 14
    ring = _ring(ring_name, hugetlbfs_or_shm, slots=cap, slot_size=64, full_policy="wait",
                 max_consumers=4, consumer_timeout=timeout)
    try:
        prod, cons, ready = _start(tmp_path, ring_name, 3, {"count": n})
        workers += cons + [prod]
        victim, line = cons[0], ring.consumer_lines[ready[0]["index"]]
        kill_at = rng.randrange(n // 20, n // 2)
        prod.send("go")
        wait_until(lambda: int(line["cursor"]) >= kill_at, 60, "the kill point")
        t_kill = time.monotonic()
        os.kill(victim.pid, signal.SIGKILL)
        if reaped:
            victim.proc.wait(timeout=10)
        wait_until(lambda: int(ring.ctrl[L.PS_EVICTIONS]) >= 1, timeout + 5, "the eviction")
        t_ev = time.monotonic()
        c0 = int(ring.ctrl[L.P_CURSOR])
        wait_until(lambda: int(ring.ctrl[L.P_CURSOR]) > c0 or int(ring.ctrl[L.P_CURSOR]) > n,
                   10, "the producer to publish again")
        t_resume = time.monotonic()
        pres = prod.expect("result", 120)
        results = [c.expect("result", 60) for c in cons[1:]]
        stall = t_resume - t_kill
        assert pres["evictions"] == 1 and int(line["state"]) == L.CONSUMER_EVICTED
        assert stall <= timeout + 0.5, f"the producer resumed {stall:.3f} s after the kill"
        if reaped:
            assert t_ev - t_kill < timeout, f"a dead pid took {t_ev - t_kill:.3f} s to evict"
        for i, r in enumerate(results):
            _assert_whole(r, n, f"surviving consumer {i}")
        fault_row.observe(f"{'reaped' if reaped else 'zombie'}: killed at seq {kill_at:,} "
                          f"(seed {SEED}); evicted after {t_ev - t_kill:.2f} s, producer "
                          f"publishing again after {stall:.2f} s (timeout {timeout} s); 2 "
                          f"survivors got all {n:,}, lost/dup/reordered/corrupt 0",
                          stall_s=round(stall, 3))
    finally:
        ring.close()


@pytest.mark.fault("consumer-kill-lossy", fault="kill -9 of a consumer, lossy ring",
                   injected="SIGKILL at a random point of a paced 1 -> 3 stream; then a new "
                            "consumer process joins",
                   expected="the producer never waits; the other consumers lose nothing; the "
                            "dead consumer's line is taken over and the newcomer gets the rest "
                            "whole")
def test_killed_consumer_of_a_lossy_ring_holds_nobody_back(ring_name, hugetlbfs_or_shm, tmp_path,
                                                            workers, fault_row):
    rng = random.Random(SEED + 7)
    rate, n, cap = 200_000, 600_000, 1 << 16
    ring = _ring(ring_name, hugetlbfs_or_shm, slots=cap, slot_size=64, mode="lossy", max_consumers=3)
    try:
        prod, cons, ready = _start(tmp_path, ring_name, 3, {"count": n, "rate": rate},
                                   consumer_role="lossy_consumer")
        workers += cons + [prod]
        victim, line = cons[0], ring.consumer_lines[ready[0]["index"]]
        kill_at = rng.randrange(n // 10, n // 3)
        t0 = time.monotonic()
        prod.send("go")
        wait_until(lambda: int(line["cursor"]) >= kill_at, 60, "the kill point")
        victim.close()                                   # SIGKILL, reaped
        newcomer = soak_worker("lossy_consumer", ring_name, tmp_path, "newcomer")
        workers.append(newcomer)
        nready = newcomer.expect("ready", 120)
        pres = prod.expect("result", 120)
        took = time.monotonic() - t0
        results = [c.expect("result", 60) for c in cons[1:]]
        nres = newcomer.expect("result", 60)
        assert took < n / rate + 5, f"the paced producer took {took:.1f} s for {n / rate:.1f} s"
        assert pres["evictions"] == 0
        for i, r in enumerate(results):
            _assert_whole(r, n, f"surviving consumer {i}")
        assert nready["index"] == ready[0]["index"], "the dead consumer's line was not reused"
        assert nres["corrupt"] == nres["lost"] == nres["duplicated"] == 0, nres
        assert nres["data"] == n - nready["cursor"] and nres["line"]["lost"] == 0, nres
        fault_row.observe(f"killed at seq {kill_at:,} (seed {SEED}); producer finished "
                          f"{n:,} at {rate:,}/s in {took:.1f} s; survivors lost 0; newcomer "
                          f"took line {nready['index']} and got {nres['data']:,} whole")
    finally:
        ring.close()


@pytest.mark.fault("consumer-stop", fault="SIGSTOP of a consumer, then SIGCONT, lossless ring",
                   injected="SIGSTOP at a random point (consumer timeout 0.3 s), the producer "
                            "laps the stopped position 4 times, SIGCONT",
                   expected="evicted within the timeout; the others lose nothing; continued, it "
                            "notices, rejoins once and counts exactly what it missed")
def test_stopped_consumer_rejoins_and_counts_what_it_missed(ring_name, hugetlbfs_or_shm, tmp_path,
                                                            workers, fault_row):
    rng = random.Random(SEED + 11)
    timeout, cap = 0.3, 1 << 14
    ring = _ring(ring_name, hugetlbfs_or_shm, slots=cap, slot_size=64, full_policy="wait",
                 max_consumers=4, consumer_timeout=timeout)
    try:
        prod, cons, ready = _start(tmp_path, ring_name, 3, {"count": None})
        workers += cons + [prod]
        victim, line = cons[0], ring.consumer_lines[ready[0]["index"]]
        stop_at = rng.randrange(50_000, 500_000)
        prod.send("go")
        wait_until(lambda: int(line["cursor"]) >= stop_at, 60, "the stop point")
        t_stop = time.monotonic()
        victim.signal(signal.SIGSTOP)
        wait_until(lambda: int(ring.ctrl[L.PS_EVICTIONS]) >= 1, timeout + 5, "the eviction")
        t_ev = time.monotonic()
        behind = int(ring.ctrl[L.P_CURSOR])
        wait_until(lambda: int(ring.ctrl[L.P_CURSOR]) > behind + 4 * cap, 30, "more traffic")
        victim.signal(signal.SIGCONT)
        wait_until(lambda: int(line["rejoins"]) == 1, 30, "the rejoin")
        after = int(line["cursor"])
        wait_until(lambda: int(line["cursor"]) > after + 100_000, 60, "traffic after it")
        prod.send("stop")
        pres = prod.expect("result", 60)
        vres = victim.expect("result", 60)
        results = [c.expect("result", 60) for c in cons[1:]]
        sent = pres["sent"]
        assert t_ev - t_stop <= timeout + 0.7, f"evicted {t_ev - t_stop:.2f} s after SIGSTOP"
        assert pres["evictions"] == 1
        for i, r in enumerate(results):
            _assert_whole(r, sent, f"witness {i}")
        assert len(vres["rejoins"]) == 1, vres["rejoins"]
        seen_missing = vres["lost"]
        assert seen_missing > 4 * cap
        assert vres["line"]["lost"] == seen_missing == vres["rejoins"][0]["missed"], vres
        assert vres["duplicated"] == vres["reordered"] == vres["corrupt"] == 0, vres
        assert vres["data"] + seen_missing == sent and vres["end"] == sent, vres
        fault_row.observe(f"stopped at seq ≥ {stop_at:,} (seed {SEED}); evicted after "
                          f"{t_ev - t_stop:.2f} s; after SIGCONT 1 rejoin, missed "
                          f"{seen_missing:,} by its own stamps = {vres['line']['lost']:,} on its "
                          f"ring line; witnesses lost 0 of {sent:,}")
    finally:
        ring.close()


@pytest.mark.fault("consumer-stop-lossy", fault="SIGSTOP of a consumer, then SIGCONT, lossy "
                                                "ring",
                   injected="SIGSTOP for 1.5 s at a random point of a paced stream (the "
                            "producer laps it), SIGCONT",
                   expected="the producer never waits, the others lose nothing; continued, it "
                            "resynchronises, counts its loss, never takes a torn slot")
def test_stopped_lossy_consumer_resynchronises_and_counts_its_loss(ring_name, hugetlbfs_or_shm,
                                                                   tmp_path, workers, fault_row):
    rng = random.Random(SEED + 13)
    rate, cap = 200_000, 1 << 16
    ring = _ring(ring_name, hugetlbfs_or_shm, slots=cap, slot_size=64, mode="lossy", max_consumers=3)
    try:
        prod, cons, ready = _start(tmp_path, ring_name, 3, {"count": None, "rate": rate},
                                   consumer_role="lossy_consumer")
        workers += cons + [prod]
        victim, line = cons[0], ring.consumer_lines[ready[0]["index"]]
        stop_at = rng.randrange(20_000, 200_000)
        prod.send("go")
        wait_until(lambda: int(line["cursor"]) >= stop_at, 60, "the stop point")
        victim.signal(signal.SIGSTOP)
        time.sleep(1.5)
        victim.signal(signal.SIGCONT)
        wait_until(lambda: int(line["rejoins"]) >= 1, 30, "the resync")
        after = int(line["cursor"])
        wait_until(lambda: int(line["cursor"]) > after + 50_000, 60, "traffic after it")
        prod.send("stop")
        pres = prod.expect("result", 60)
        vres = victim.expect("result", 60)
        results = [c.expect("result", 60) for c in cons[1:]]
        sent = pres["sent"]
        for i, r in enumerate(results):
            _assert_whole(r, sent, f"fast consumer {i}")
        assert vres["lost"] > 0 and vres["line"]["lost"] == vres["lost"], vres
        assert vres["corrupt"] == vres["duplicated"] == vres["reordered"] == 0, vres
        assert vres["data"] + vres["lost"] == sent and vres["end"] == sent, vres
        fault_row.observe(f"stopped at seq ≥ {stop_at:,} (seed {SEED}) for 1.5 s at "
                          f"{rate:,}/s; lost {vres['lost']:,} by its own stamps = ring line, "
                          f"{vres['line']['rejoins']} resync(s), 0 torn; fast consumers lost 0 "
                          f"of {sent:,}")
    finally:
        ring.close()


# --- the producer -----------------------------------------------------------------------------------
@pytest.mark.fault("producer-gone", fault="the producer dies or hangs",
                   injected="kill -9 of the producer mid-stream (reaped, or left a zombie), or "
                            "SIGSTOP of it; engine consumers with on_producer_gone=stop, "
                            "producer timeout 1 s",
                   expected="each consumer reads what was published, then reports end of "
                            "stream naming the pid and stops: dead within 1 s, stopped within "
                            "the timeout + 1 s")
@pytest.mark.parametrize("how", ["kill-reaped", "kill-zombie", "sigstop"])
def test_consumers_report_end_of_stream_when_the_producer_goes(ring_name, hugetlbfs_or_shm, tmp_path,
                                                               workers, fault_row, how):
    ring = _ring(ring_name, hugetlbfs_or_shm, slots=1 << 14, slot_size=64, full_policy="wait",
                 max_consumers=4)
    try:
        cons = [engine_worker(ring_name, tmp_path, f"e{i}", on_producer_gone="stop",
                              producer_timeout=1.0) for i in range(2)]
        workers += cons
        [c.expect("ready", 300) for c in cons]
        prod = soak_worker("producer", ring_name, tmp_path, "producer", count=None, rate=500_000)
        workers.append(prod)
        ppid = prod.expect("ready", 120)["pid"]
        prod.send("go")
        wait_until(lambda: int(ring.ctrl[L.P_CURSOR]) > 100_000, 60, "traffic")
        t_fault = time.time_ns()
        if how == "sigstop":
            prod.signal(signal.SIGSTOP)
        else:
            os.kill(prod.pid, signal.SIGKILL)
            if how == "kill-reaped":
                prod.proc.wait(timeout=10)
        results = [c.expect("result", 30) for c in cons]
        final = int(ring.ctrl[L.P_CURSOR])
        bound = 1.0 if how != "sigstop" else 1.0 + 1.0
        word = "exists but has been silent" if how == "sigstop" else "died"
        for i, r in enumerate(results):
            took = (r["t_ns"] - t_fault) / 1e9
            assert r["status"].startswith("end of stream: "), r["status"]
            assert f"producer pid {ppid} {word}" in r["status"], r["status"]
            assert took <= bound, f"consumer {i} noticed after {took:.2f} s"
            assert r["cursor"] == final and r["last_seq"] == final - 1, r
            assert r["lost"] == r["duplicated"] == r["corrupt"] == 0, r
            assert "end of stream on ring" in stderr_of(cons[i], tmp_path)
        slowest = max((r["t_ns"] - t_fault) / 1e9 for r in results)
        fault_row.observe(f"{how}: both consumers stopped {slowest:.2f} s "
                          f"after the fault, having read all {final:,}: \"{results[0]['status']}\"")
    finally:
        ring.close()


@pytest.mark.fault("producer-restart", fault="kill -9 of the producer, then a new producer on "
                                             "the same ring",
                   injected="SIGKILL of producer 1 mid-stream; producer 2 attaches to the same "
                            "ring and publishes 300,000 more and the end marker",
                   expected="consumers report end of stream, then the new producer, and go on: "
                            "one continuous (producer, seq) stream, nothing lost or corrupt; the "
                            "ring reopens clean")
def test_restarted_producer_resumes_and_consumers_continue(ring_name, hugetlbfs_or_shm, tmp_path,
                                                           workers, fault_row):
    n2 = 300_000
    ring = _ring(ring_name, hugetlbfs_or_shm, slots=1 << 14, slot_size=64, full_policy="wait",
                 max_consumers=4)
    try:
        cons = [engine_worker(ring_name, tmp_path, f"e{i}", on_producer_gone="report",
                              producer_timeout=1.0) for i in range(2)]
        workers += cons
        [c.expect("ready", 300) for c in cons]
        p1 = soak_worker("producer", ring_name, tmp_path, "producer1", id=1, count=None)
        workers.append(p1)
        p1.expect("ready", 120)
        p1.send("go")
        wait_until(lambda: int(ring.ctrl[L.P_CURSOR]) > 200_000, 60, "traffic")
        os.kill(p1.pid, signal.SIGKILL)
        p1.proc.wait(timeout=10)
        cut = int(ring.ctrl[L.P_CURSOR])
        eos = [c.expect("eos", 10) for c in cons]
        p2 = soak_worker("producer", ring_name, tmp_path, "producer2", id=2, count=n2)
        workers.append(p2)
        resume = p2.expect("ready", 120)["resume"]
        p2.send("go")
        back = [c.expect("back", 10) for c in cons]
        pres = p2.expect("result", 60)
        results = [c.expect("result", 60) for c in cons]
        assert resume == cut, f"producer 2 resumed at {resume}, the cursor was {cut}"
        for i, r in enumerate(results):
            assert f"producer pid {p1.pid} died" in eos[i]["message"]
            assert eos[i]["cursor"] == cut and back[i]["cursor"] >= cut
            assert r["switches"] == 1 and r["producer_id"] == 2, r
            assert r["lost"] == r["duplicated"] == r["corrupt"] == 0, r
            assert r["end"] == pres["final"] - 1 and r["data"] == pres["final"] - 1 - r["first_seq"]
            assert "has a producer again" in stderr_of(cons[i], tmp_path)
        again = Ring.open(ring_name)          # header and cursors still valid
        assert int(again.ctrl[L.P_CURSOR]) == pres["final"]
        again.close()
        fault_row.observe(f"killed at seq {cut:,}; both consumers reported \"{eos[0]['message']}\", "
                          f"then the new producer; it resumed at {resume:,}; each consumer got "
                          f"{results[0]['data']:,} messages across the two producers, lost/dup/"
                          f"corrupt 0")
    finally:
        ring.close()


# --- a crash inside the handler ---------------------------------------------------------------------
@pytest.mark.fault("handler-crash", fault="a consumer crashes inside its handler",
                   injected="the @njit handler raises an exception mid-stream, or kills its "
                            "process with SIGSEGV mid-burst (holding the burst)",
                   expected="raise: the burst is counted as handler errors and released, the "
                            "loop goes on; SIGSEGV: the producer evicts the dead consumer at "
                            "once, the other loses nothing, a new consumer takes the line; the "
                            "ring stays usable")
@pytest.mark.parametrize("kind", ["raise", "sigsegv"])
def test_crash_in_the_handler_leaves_the_ring_usable(ring_name, hugetlbfs_or_shm, tmp_path, workers,
                                                     fault_row, kind):
    import stamp_handler as H
    n, crash_at = 400_000, 100_000
    # two lines: the newcomer can only join by taking over the crashed consumer's line
    ring = _ring(ring_name, hugetlbfs_or_shm, slots=1 << 12, slot_size=64, full_policy="wait",
                 max_consumers=2, consumer_timeout=1.0)
    try:
        crasher = engine_worker(ring_name, tmp_path, "crasher", crash_at=crash_at,
                                crash_kind=H.CRASH_RAISE if kind == "raise" else H.CRASH_SEGV)
        witness = engine_worker(ring_name, tmp_path, "witness")
        workers += [crasher, witness]
        cready = crasher.expect("ready", 300)
        witness.expect("ready", 300)
        # SIGSEGV: the producer runs until told to stop, so the newcomer sees the stream go on
        prod = soak_worker("producer", ring_name, tmp_path, "producer",
                           count=n if kind == "raise" else None)
        workers.append(prod)
        prod.expect("ready", 120)
        prod.send("go")
        if kind == "raise":
            pres = prod.expect("result", 120)
            cres, wres = crasher.expect("result", 60), witness.expect("result", 60)
            errs = cres["handler_errors"]
            # the whole burst counts as handler errors; the packets from the crash on were
            # never handled, and the handler's own stamps see them as the gap
            assert 1 <= cres["lost"] <= errs <= 32, cres
            assert cres["data"] + cres["lost"] == n, cres
            assert cres["corrupt"] == cres["duplicated"] == 0 and cres["end"] == n, cres
            assert "handler raised ValueError: handler crash injected" in stderr_of(crasher,
                                                                                    tmp_path)
            obs = (f"raise at seq {crash_at:,}: the burst ({errs} packets) counted as handler "
                   f"errors and released, {cres['lost']} of them never handled; the loop went "
                   f"on to the end ({cres['data']:,} + {cres['lost']} = {n:,})")
        else:
            status = crasher.proc.wait(timeout=120)
            assert status == -signal.SIGSEGV, f"the crasher exited with {status}"
            wait_until(lambda: int(ring.ctrl[L.PS_EVICTIONS]) >= 1, 5, "the eviction")
            newcomer = engine_worker(ring_name, tmp_path, "newcomer")
            workers.append(newcomer)
            nready = newcomer.expect("ready", 300)
            nline = ring.consumer_lines[nready["index"]]
            wait_until(lambda: int(nline["cursor"]) > nready["cursor"] + 50_000, 60,
                       "traffic to the newcomer")
            prod.send("stop")
            pres = prod.expect("result", 120)
            n = pres["sent"]
            wres = witness.expect("result", 60)
            nres = newcomer.expect("result", 60)
            assert nready["index"] == cready["index"], "the crashed consumer's line was not reused"
            assert nres["corrupt"] == nres["lost"] == nres["duplicated"] == 0 and nres["end"] == n
            assert nres["data"] == n - nres["first_seq"], nres
            obs = (f"SIGSEGV at seq {crash_at:,}: the process died of signal 11, evicted "
                   f"({int(ring.ctrl[L.PS_EVICTIONS])}), a newcomer took line {nready['index']} "
                   f"and got {nres['data']:,} whole")
        assert pres["published"] == n + 1
        assert wres["data"] == n and wres["lost"] == wres["corrupt"] == wres["duplicated"] == 0
        fault_row.observe(obs + f"; the witness got all {n:,}")
    finally:
        ring.close()
