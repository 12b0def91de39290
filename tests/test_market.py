"""The exchange pipeline: order flow -> matching engine -> ITCH/MoldUDP64 feed -> strategies
(engine/exchange.py, examples/itch_strategy.py) and ``hugering market`` (``make demo``)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from engine import book as BK
from engine import exchange as X
from engine import matching as MX
from shm import layout as L
from shm.ring import Ring

ROOT = Path(__file__).resolve().parents[1]


def test_strategy_books_equal_the_matching_engines_books(ring_name):
    """Everything the exchange publishes reaches the strategy in order, and the books the
    strategy rebuilds from the ITCH feed equal the matching engine's own books, instrument
    by instrument, level by level."""
    from engine.exchange import Exchange, OrderFlow
    from engine.loop import ConsumerEngine
    sys.path.insert(0, str(ROOT))
    from examples import itch_strategy as S
    orders = Ring.create(ring_name + ".o", slots=4096, slot_size=256, full_policy="wait")
    feed = Ring.create(ring_name + ".f", slots=1 << 14, slot_size=2048, full_policy="wait")
    state = S.make_state(watch=(1, 2, 3, 4), max_instruments=8)
    eng = ConsumerEngine(feed, name="strategy", handler=S.on_burst, filter="udp", state=state)
    ex = Exchange(orders, feed, instruments=8)
    ex.stop[0] = 1          # compile the exchange loop first (it returns at its first check):
    ex.run()                # a cold compile takes longer than the ring's consumer timeout
    ex.stop[0] = 0
    of = OrderFlow(orders, instruments=8, seed=7, per_frame=4)
    of.run(duration=1e-9)   # the same for the order flow (publishes nothing)
    th = threading.Thread(target=ex.run, kwargs={"duration": 300})
    th.start()
    try:
        gen = of.run(frames=20000)
        # the exchange drains the orders ring, then the strategy reads all it published
        deadline = time.monotonic() + 300
        while int(orders.ctrl[L.P_CURSOR]) != ex.consumer.cursor:
            assert time.monotonic() < deadline and th.is_alive()
            time.sleep(0.01)
        while eng.run(duration=0.2)["received"] < int(ex.x[X.X_PACKETS_OUT]):
            assert time.monotonic() < deadline
    finally:
        ex.stop[0] = 1
        th.join(60)
    rep = eng.run(duration=0.5)
    x = ex.report()
    assert gen["messages"] == 80000 == x["entries_in"] and x["bad_frames"] == 0
    books, tracker, header, counters, watch, view = eng.state
    assert counters[S.C_APPLIED] == x["messages_out"] > 80000 * 0.9
    assert counters[S.C_GAPS] == 0 and counters[S.C_DUPLICATES] == 0 and rep["lost"] == 0
    assert x["engine"]["fills"] > 0 and x["engine"]["rej_unknown_ref"] > 0
    e = ex.engine.state
    out_b = np.zeros((300, 3), np.int64)
    for loc in range(1, 9):
        for side, bside in ((MX.SIDE_BUY, BK.SIDE_BID), (MX.SIDE_SELL, BK.SIDE_ASK)):
            want = ex.engine.book(loc, side)            # [[(price, qty, orders)], ...]
            n = BK.depth(books, loc, ord("B") if side == MX.SIDE_BUY else ord("S"), 300, out_b)
            got = [tuple(int(v) for v in out_b[j]) for j in range(n)]
            want_levels = [(price, sum(q for _, _, q in queue), len(queue))
                           for price, queue in want]
            assert got == want_levels, (loc, side)
    for r in (orders, feed):
        r.close()


def test_market_demo_runs_clean():
    """The demo runs clean, and first removes the rings a run killed with -9 left behind."""
    dead = subprocess.Popen(["true"])
    dead.wait()                                    # a pid that no longer runs
    stale = [f"market-orders-{dead.pid}", f"market-feed-{dead.pid}"]
    for n in stale:
        Ring.create(n, slots=64, slot_size=64).close()
    p = subprocess.run([sys.executable, "-m", "engine.cli", "market", "--duration", "3",
                        "--order-rate", "40k", "--json"], capture_output=True, text=True,
                       cwd=ROOT, timeout=900)
    assert p.returncode == 0, p.stderr
    removed = [ln for ln in p.stderr.splitlines() if "removed what killed runs left: " in ln]
    assert removed and set(stale) <= set(removed[0].split("left: ", 1)[1].split(", ")), p.stderr
    r = json.loads(p.stdout)
    assert r["ok"]
    published = r["exchange"]["messages_out"]
    assert published > 0.9 * r["order_flow"]["messages"] > 0
    for s in r["strategies"]:
        assert s["applied"] == published and s["gaps"] == 0 and s["lost"] == 0
        assert s["latency_ns"]["count"] > 0
    names = os.listdir("/dev/shm") + (os.listdir("/dev/hugepages")
                                      if os.path.isdir("/dev/hugepages") else [])
    assert not [n for n in names if "market-" in n]                 # rings removed


def test_market_demo_over_afxdp(need_root):
    """``hugering market --afxdp``: the feed leaves the exchange through an AF_XDP TX socket,
    crosses a veth pair, comes back through XDP and an AF_XDP RX socket; every frame the
    exchange published arrives (sent == received == MoldUDP64 packets out), both strategies
    apply every message in order, and the namespace and rings are gone afterwards."""
    p = subprocess.run([sys.executable, "-m", "engine.cli", "market", "--afxdp", "--duration",
                        "3", "--order-rate", "40k", "--json"], capture_output=True, text=True,
                       cwd=ROOT, timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    r = json.loads(p.stdout)
    assert r["ok"]
    packets, published = r["exchange"]["packets_out"], r["exchange"]["messages_out"]
    assert packets > 0 and published > 0.9 * r["order_flow"]["messages"]
    tx, rx = r["afxdp"]["sides"]["tx"], r["afxdp"]["sides"]["rx"]
    assert tx["tx_sent"] == rx["published"] == packets
    assert tx["tx_errors"] == tx["tx_lost"] == rx["dropped"] == rx["nic_drops"] == 0
    assert "xdp native mode" in rx["mode"] and "TX from ring" in tx["mode"]
    for s in r["strategies"]:
        assert s["applied"] == published and s["gaps"] == 0 and s["lost"] == 0
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert r["afxdp"]["netns"].startswith("hm") and r["afxdp"]["netns"] not in netns.split()
    names = os.listdir("/dev/shm") + (os.listdir("/dev/hugepages")
                                      if os.path.isdir("/dev/hugepages") else [])
    assert not [n for n in names if "market-" in n]


def test_a_silent_process_is_named_with_how_it_ended():
    """When a demo process never reports, the error says which, and whether it still runs or
    how it ended (what made the strategy that missed its stop request diagnosable); one that
    ended without its word fails the wait at once, not at the timeout, while one that put its
    word before it ended is heard."""
    import multiprocessing as mp

    from engine.market import Events, MarketError
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    gone = ctx.Process(target=os._exit, args=(3,), name="strategy 1")
    stuck = ctx.Process(target=time.sleep, args=(30,), name="exchange")
    said_and_gone = ctx.Process(target=queue.put, args=(("done", "order flow", {"n": 7}),),
                                name="order flow")
    procs = [gone, stuck, said_and_gone]
    for p in procs:
        p.start()
    try:
        gone.join(10)
        said_and_gone.join(10)
        said = Events(queue, procs)
        assert said.wait("done", {"order flow"}, 10) == {"order flow": {"n": 7}}
        with pytest.raises(MarketError) as e:
            said.wait("done", {"exchange"}, 0.5)
        assert str(e.value) == f"no word from exchange (pid {stuck.pid} still running) after 0.5 s"
        t0 = time.monotonic()
        with pytest.raises(MarketError) as e:
            said.wait("ready", {"strategy 1", "exchange"}, 20)
        assert str(e.value) == (f"strategy 1 (pid {gone.pid} exited with status 3) without a "
                                "word (ready)")
        assert time.monotonic() - t0 < 5
    finally:
        stuck.kill()
        stuck.join()


def _children_of(pid: int) -> list[int]:
    kids = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                kids.append(int(d))
    return kids


def _running(pid: int) -> bool:
    """Exists and is not a zombie (a killed demo's children are reparented; a container's
    init may not reap them)."""
    from shm.clock import pid_alive
    from shm.liveness import _is_zombie
    return pid_alive(pid) and not _is_zombie(pid)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["term", "kill9"])
def test_a_killed_afxdp_demo_leaves_nothing_polling(need_root, sig):
    """``kill`` of ``hugering market --afxdp`` in full flow ends it like Ctrl-C (status 130,
    rings and namespace removed); ``kill -9`` leaves no process behind either (the AF_XDP
    sides, in sessions of their own, get SIGINT from the kernel when the demo dies; the
    Python children notice their parent is gone), and the next run's sweep removes the rings
    and the namespace."""
    import io

    from engine.market import sweep_stale
    p = subprocess.Popen([sys.executable, "-m", "engine.cli", "market", "--afxdp", "--duration",
                          "120", "--order-rate", "20k", "--no-live"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, cwd=ROOT)
    netns = f"hm{p.pid}"
    kids: list[int] = []
    try:
        lines = []
        for line in p.stderr:                    # until the order flow runs
            lines.append(line)
            if "ready in" in line:
                break
        assert lines and "ready in" in lines[-1], "".join(lines)
        time.sleep(1.0)
        kids = _children_of(p.pid)
        assert len(kids) >= 6, kids              # 2 strategies, exchange, order flow, 2 sides
        p.send_signal(sig)
        rc = p.wait(90)
        end = time.monotonic() + 30
        while [k for k in kids if _running(k)] and time.monotonic() < end:
            time.sleep(0.2)
        assert not [k for k in kids if _running(k)], kids
        if sig == signal.SIGTERM:
            assert rc == 130
        else:
            assert rc == -signal.SIGKILL
            out = io.StringIO()
            sweep_stale(out)
            assert f"netns {netns}" in out.getvalue() and f"market-feed-{p.pid}" in out.getvalue()
        listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        assert netns not in listed.split()
        names = os.listdir("/dev/shm") + os.listdir("/dev/hugepages")
        assert not [n for n in names if f"-{p.pid}" in n and "market-" in n]
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        for k in kids:
            if _running(k):
                os.kill(k, signal.SIGKILL)
        subprocess.run(["ip", "netns", "del", netns], capture_output=True)
        sweep_stale(io.StringIO())
