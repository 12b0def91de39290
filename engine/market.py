"""``hugering market`` (what ``make demo`` runs): an exchange and two strategies, live.

    order flow ──► ring orders ──► exchange (matching engine) ──► ring feed ──► strategy 0
      (process)                       (process)                 ITCH 5.0 /   └► strategy 1
                                                                MoldUDP64      (processes)

Five processes on two fresh rings (hugepages when this user can have them, else POSIX shared
memory; both removed at the end): the seeded order-entry generator
(``engine.exchange.OrderFlow``), the matching engine (``engine.exchange.Exchange``), and two
engine consumers running ``examples/itch_strategy.py`` (order books for every instrument, a
micro-price / imbalance signal for a watch list).  The terminal shows, refreshed in place,
the order and ITCH message rates, trades, rejects, each strategy's MoldUDP64 gaps and its
latency from the exchange's publish to the handler (the engine's histogram), and the top of
book of the watched instruments as strategy 0 sees it; then a summary.  Exit status 0 when
both strategies applied every message the exchange published, in order, with no gap.

The processes share one small array (``board``): the exchange's counters, the generator's, and
each strategy's view (``examples.itch_strategy.V_*``); the latency comes from the feed ring's
stats region, as ``hugering stat`` reads it.

``--afxdp`` (root, libxdp): the feed crosses a real link instead of going straight into the
strategies' ring::

    exchange ──► ring feedtx ──► AF_XDP TX on veth hm<pid>a ──wire──► veth hm<pid>b, XDP
             ──► AF_XDP RX (filter "udp dst port 26400") ──► ring feed ──► strategies

Both ends of the veth pair live in a network namespace of the demo's own (``hm<pid>``),
deleted at the end; each AF_XDP side is a ``hugering afxdp`` process in that namespace.  The strategies
then measure latency from the AF_XDP receive (the feed ring's timestamp), and a frame lost on
the way shows as a MoldUDP64 gap: the demo fails rather than hide it.
"""
from __future__ import annotations

import json
import multiprocessing as mp
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DURATION = 15.0
DEFAULT_ORDER_RATE = 100_000          # order-entry messages per second
PER_FRAME = 4                         # order-entry messages per UDP frame
INSTRUMENTS = 16
WATCH = (1, 2, 3, 4)
STRATEGIES = 2

FEED_PORT = 26400                     # engine.producers.itch_feed.Framing's default dport

# board layout (int64 words)
B_STOP = 0                            # the exchange's stop flag
B_X = 8                               # engine.exchange X_* words
B_ENGINE = 24                         # engine.matching counters, COUNTER_NAMES order
B_GEN = 64                            # engine.exchange G_* words
B_VIEW = 80                           # strategy s view at B_VIEW + s * view_words


def _examples_importable() -> None:
    """The strategy lives in examples/ (code to copy), next to the package in a checkout."""
    if (ROOT / "examples" / "itch_strategy.py").is_file() and str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))


def _view_words() -> int:
    _examples_importable()
    from examples.itch_strategy import view_words
    return view_words(len(WATCH))


def board_words() -> int:
    return B_VIEW + STRATEGIES * _view_words()


def _child_setup() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)      # Ctrl-C belongs to the parent
    from engine.cli import setup_logging
    setup_logging()
    _examples_importable()


def _strategy_main(feed, index, board_raw, events, ppid):
    _child_setup()
    try:
        from engine.loop import ConsumerEngine
        from examples import itch_strategy as S
        board = np.frombuffer(board_raw, dtype=np.int64)
        vw = _view_words()
        view = board[B_VIEW + index * vw:B_VIEW + (index + 1) * vw]
        state = S.make_state(watch=WATCH, max_instruments=INSTRUMENTS, view=view)
        eng = ConsumerEngine(feed, name=f"strategy-{index}", handler=S.on_burst,
                             filter="udp", idle="backoff", max_sleep_us=50, state=state)
        events.put(("ready", f"strategy {index}", {"pid": os.getpid(), "line": eng.index,
                                                    "warm_up_s": eng.warm_up_s}))
        rep = eng.run(handle_signals=False, on_chunk=lambda e: os.getppid() == ppid)
        d = S.describe(eng.state)
        eng.close()
        events.put(("done", f"strategy {index}", {"report": rep, "state": d}))
    except BaseException as e:
        events.put(("error", f"strategy {index}", f"{type(e).__name__}: {e}"))
        raise


def _exchange_main(orders, feed, board_raw, events, ppid):
    _child_setup()
    try:
        from engine import exchange as X
        from engine.matching import COUNTER_NAMES
        from shm.ring import Ring
        board = np.frombuffer(board_raw, dtype=np.int64)
        o, f = Ring.open(orders), Ring.open(feed, writable_slots=True)
        ex = X.Exchange(o, f, instruments=INSTRUMENTS, stop=board[B_STOP:B_STOP + 1],
                        idle_sleep_us=20)
        board[B_STOP] = 1                  # compile the loop: it returns at its first check
        ex.run()
        board[B_STOP] = 0
        events.put(("ready", "exchange", {"pid": os.getpid()}))
        n = len(COUNTER_NAMES)

        def publish(e):
            board[B_X:B_X + X.X_WORDS] = e.x
            c = e.engine.counters()
            board[B_ENGINE:B_ENGINE + n] = [c[k] for k in COUNTER_NAMES]
            return os.getppid() == ppid
        rep = ex.run(on_chunk=publish)
        publish(ex)
        ex.close()
        events.put(("done", "exchange", rep))
    except BaseException as e:
        events.put(("error", "exchange", f"{type(e).__name__}: {e}"))
        raise


def _orders_main(orders, board_raw, rate, duration, go, events, ppid):
    _child_setup()
    try:
        from engine import exchange as X
        from shm.ring import Ring
        board = np.frombuffer(board_raw, dtype=np.int64)
        ring = Ring.open(orders, writable_slots=True)
        of = X.OrderFlow(ring, instruments=INSTRUMENTS, seed=1, per_frame=PER_FRAME)
        of.run(duration=1e-9)               # compile; publishes nothing
        events.put(("ready", "order flow", {"pid": os.getpid()}))
        # the others may compile for minutes (a cold cache on a busy machine): wait for the
        # word however long it takes, but not for a parent that is gone
        while not go.wait(1.0):
            if os.getppid() != ppid:
                return

        def stop():
            board[B_GEN:B_GEN + X.G_WORDS] = of.g
            return os.getppid() != ppid
        rep = of.run(rate_fps=rate / PER_FRAME, duration=duration, stop=stop)
        board[B_GEN:B_GEN + X.G_WORDS] = of.g
        of.close()
        events.put(("done", "order flow", rep))
    except BaseException as e:
        events.put(("error", "order flow", f"{type(e).__name__}: {e}"))
        raise


class MarketError(RuntimeError):
    pass


# --- --afxdp: the feed over a veth pair through AF_XDP ---------------------------------------
class Link:
    """A network namespace ``hm<pid>`` holding both ends of a veth pair (``hm<pid>a``, the
    exchange's side, and ``hm<pid>b``, the strategies'); nothing is routed anywhere else.
    Deleting the namespace deletes the pair: ``close`` does, also after a failed setup."""

    def __init__(self, pid: int):
        self.netns = f"hm{pid}"
        self.tx_if, self.rx_if = f"hm{pid}a", f"hm{pid}b"

    @staticmethod
    def _ip(*args: str) -> None:
        r = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
        if r.returncode != 0:
            raise MarketError(f"--afxdp: ip {' '.join(args)}: {r.stderr.strip()}")

    def open(self) -> "Link":
        if os.geteuid() != 0:
            raise MarketError("--afxdp needs root (a network namespace, XDP programs, "
                              "AF_XDP sockets); run without it for the shared-memory feed")
        try:
            self._ip("netns", "add", self.netns)
            self._ip("-n", self.netns, "link", "add", self.tx_if, "type", "veth", "peer",
                     "name", self.rx_if)
            for dev in ("lo", self.tx_if, self.rx_if):
                self._ip("-n", self.netns, "link", "set", dev, "up")
        except FileNotFoundError:
            self.close()
            raise MarketError("--afxdp needs iproute2 (ip)") from None
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        subprocess.run(["ip", "netns", "del", self.netns], capture_output=True, timeout=30)


def _start_side(link: Link, iface: str, ring: str, filt: str, tx_ring: str | None = None):
    """One AF_XDP side of the link: ``hugering afxdp`` in the link's namespace (``ip netns
    exec``, which also gives it that namespace's /sys).  The rx side takes the feed frames off
    ``hm<pid>b`` into the feed ring; the tx side sends what the exchange writes into feedtx out
    of ``hm<pid>a`` (its own RX ring, filtered on a port nothing uses, stays empty)."""
    from engine.child import set_death_signal
    # the rx side gets the verb's default UMEM (16384 frames, also its fill and RX ring
    # sizes): the tx side sends the exchange's backlog in one go after a stall, and at 4096 a
    # busy machine's scheduling gaps overflowed the RX ring (dropped at the socket, a gap);
    # the tx side's own RX ring stays empty and needs little
    argv = ["ip", "netns", "exec", link.netns, sys.executable, "-m", "engine.cli", "afxdp",
            iface, "--ring", ring, "--filter", filt, "--mode", "native", "--json"] + (
                ["--frames", "4096", "--tx-ring", tx_ring] if tx_ring else [])
    demo = os.getpid()

    def die_with_the_demo():
        # in the side's own session (a Ctrl-C on the terminal is the demo's to pass on), so
        # nothing else would stop it when the demo is killed: SIGINT then, which detaches its
        # XDP program and ends it; a demo gone before this line was set: do not start at all
        set_death_signal(signal.SIGINT)
        if os.getppid() != demo:
            os._exit(1)
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=ROOT, start_new_session=True, preexec_fn=die_with_the_demo)


def _side_running(proc, ring, timeout: float) -> str:
    """Wait until the side's poll loop runs (it stamps its ring's producer heartbeat once
    compiled and polling); returns its first stderr line (the XDP and bind modes obtained)."""
    from shm import layout as L
    line = proc.stderr.readline().strip()
    end = time.monotonic() + timeout
    while int(ring.ctrl[L.P_HEARTBEAT]) == 0:
        if proc.poll() is not None:
            raise MarketError(f"--afxdp: {line} {proc.stderr.read().strip()}".strip())
        if time.monotonic() > end:
            raise MarketError(f"--afxdp: the AF_XDP side of ring {ring.name} did not start "
                              f"polling within {timeout:g} s")
        time.sleep(0.05)
    return line


def _stop_side(proc) -> dict:
    """SIGINT (the verb then detaches its program and prints its report), the report back."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    try:
        return json.loads(out)
    except ValueError:
        raise MarketError(f"--afxdp: an AF_XDP side ended without a report: "
                          f"{err.strip()[-500:]}") from None


class Events:
    """What the children said, by kind (``ready``, ``done``) and by who, and the children
    themselves: a wait names a silent one and says whether it still runs or how it ended, and
    fails as soon as one ended without its word instead of at the timeout."""

    def __init__(self, queue, procs):
        self.queue = queue
        self.procs = procs
        self.seen: dict = {"ready": {}, "done": {}}

    def _proc(self, who: str):
        """The child whose events say ``who`` (each process is named as its events are)."""
        for p in self.procs:
            if p.name == who:
                return p
        return None

    def poll(self, timeout: float) -> bool:
        """Take one event (waiting up to ``timeout`` s); False when none came."""
        try:
            kind, who, info = self.queue.get(timeout=timeout)
        except Exception:                  # queue.Empty
            return False
        if kind == "error":
            raise MarketError(f"{who}: {info}")
        self.seen[kind][who] = info
        return True

    def _how(self, who: str) -> str:
        p = self._proc(who)
        if p is None:
            return who
        if p.exitcode is None:
            return f"{who} (pid {p.pid} still running)"
        return f"{who} (pid {p.pid} exited with status {p.exitcode})"

    def wait(self, kind: str, want: set, timeout: float, tick=None) -> dict:
        """Until each of ``want`` said ``kind``; ``tick()`` runs between polls (the live
        display).  Returns what they said, by who."""
        end = time.monotonic() + timeout
        while True:
            missing = want - set(self.seen[kind])
            if not missing:
                return self.seen[kind]
            left = end - time.monotonic()
            if left <= 0:
                silent = ", ".join(self._how(w) for w in sorted(missing))
                raise MarketError(f"no word from {silent} after {timeout:g} s")
            self.poll(min(left, 0.5))
            if tick is not None:
                tick()
            ended = [w for w in missing if (p := self._proc(w)) is not None
                     and p.exitcode is not None]
            if ended:
                # what it put before it ended is in the pipe already (a child's queue flushes
                # at exit): read all of that before calling it silent
                while self.poll(0.2):
                    pass
                ended = [w for w in ended if w not in self.seen[kind]]
                if ended:
                    raise MarketError(f"{', '.join(self._how(w) for w in sorted(ended))} "
                                      f"without a word ({kind})")


def _latency(stats, lines) -> list[dict]:
    out = []
    for k in lines:
        s = stats.snapshot(k) if stats is not None else None
        out.append(s["latency_ns"] if s else {})
    return out


def _render(board, stats, lines, t0, prev, duration):
    from rich.console import Group
    from rich.table import Table

    from engine import exchange as X
    from engine.matching import COUNTER_NAMES
    from examples import itch_strategy as S
    now = time.monotonic()
    dt = max(now - prev["t"], 1e-9)
    eng = {k: int(board[B_ENGINE + i]) for i, k in enumerate(COUNTER_NAMES)}
    msgs_out = int(board[B_X + X.X_MSGS_OUT])
    orders = int(board[B_GEN + X.G_MESSAGES])
    rates = {"orders": (orders - prev["orders"]) / dt, "itch": (msgs_out - prev["itch"]) / dt,
             "fills": (eng["fills"] - prev["fills"]) / dt}
    prev.update(t=now, orders=orders, itch=msgs_out, fills=eng["fills"])
    head = Table(title=f"hugering market demo · {now - t0:4.1f} / {duration:g} s",
                 title_justify="left")
    for c in ("orders in", "orders/s", "ITCH out", "ITCH msgs/s", "fills", "fills/s",
              "rejects (late cancels)", "resting"):
        head.add_column(c, justify="right")
    head.add_row(f"{orders:,}", f"{rates['orders']:,.0f}", f"{msgs_out:,}",
                 f"{rates['itch']:,.0f}", f"{eng['fills']:,}", f"{rates['fills']:,.0f}",
                 f"{eng['rej_unknown_ref']:,}", f"{eng['rested'] - eng['deleted']:,}")
    st = Table(title="strategies (feed publish -> handler latency)", title_justify="left")
    for c in ("strategy", "packets", "ITCH applied", "gaps", "signals", "p50", "p99", "p99.9",
              "max"):
        st.add_column(c, justify="right")
    vw = _view_words()
    for s, lat in enumerate(_latency(stats, lines)):
        v = board[B_VIEW + s * vw:B_VIEW + (s + 1) * vw]
        st.add_row(str(s), f"{int(v[S.C_PACKETS]):,}", f"{int(v[S.C_APPLIED]):,}",
                   f"{int(v[S.C_GAPS]):,}", f"{int(v[S.C_SIGNALS]):,}",
                   *[_ns(lat.get(q)) for q in ("p50", "p99", "p99_9", "max")])
    tob = Table(title="top of book (strategy 0)", title_justify="left")
    for c in ("locate", "bid size", "bid", "ask", "ask size", "micro-price", "imbalance",
              "signals"):
        tob.add_column(c, justify="right")
    v = board[B_VIEW:B_VIEW + vw]
    for k in range(len(WATCH)):
        w = S.COUNTER_WORDS + k * S.VIEW_STRIDE
        tob.add_row(str(int(v[w + S.V_LOCATE])), f"{int(v[w + S.V_BID_SIZE]):,}",
                    f"{v[w + S.V_BID] / 1e4:,.2f}", f"{v[w + S.V_ASK] / 1e4:,.2f}",
                    f"{int(v[w + S.V_ASK_SIZE]):,}", f"{v[w + S.V_MICRO] / 1e4:,.4f}",
                    f"{v[w + S.V_IMBALANCE] / 1e4:+.2f}", f"{int(v[w + S.V_SIGNAL]):,}")
    return Group(head, st, tob)


def _ns(v) -> str:
    if v is None:
        return "-"
    return f"{v / 1e3:,.1f} us" if v >= 10_000 else f"{v:,} ns"


def sweep_stale(out) -> None:
    """Rings (and stats regions, and --afxdp namespaces) of demo runs whose process is gone:
    a run killed with -9 cannot remove them, and its rings hold huge pages the next run needs.
    Names carry the demo's pid (``market-feed-PID``, ``hm<PID>``), so a live run's are kept."""
    import re

    from engine.stats import remove as remove_stats
    from shm.backing import list_rings
    from shm.clock import pid_alive
    from shm.ring import Ring
    gone = set()
    for name, _ in list_rings():
        m = re.fullmatch(r"market-(orders|feed|feedtx|txrx)-(\d+)", name)
        if m and not pid_alive(int(m.group(2))):
            try:
                Ring.remove(name)
                remove_stats(name)
                gone.add(name)
            except Exception:                  # another user's, or just removed: leave it
                pass
    lines = []
    if os.geteuid() == 0 and shutil.which("ip"):
        r = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
        lines = r.stdout.splitlines() if r.returncode == 0 else []
    for line in lines:
        m = re.fullmatch(r"hm(\d+)", line.split()[0]) if line.split() else None
        if m and not pid_alive(int(m.group(1))):
            subprocess.run(["ip", "netns", "del", m.group(0)], capture_output=True)
            gone.add(f"netns {m.group(0)}")
    if gone:
        print(f"hugering market: removed what killed runs left: {', '.join(sorted(gone))}",
              file=out, flush=True)


def run_market(duration: float = DEFAULT_DURATION, order_rate: float = DEFAULT_ORDER_RATE,
               json_out: bool = False, live: bool | None = None, afxdp: bool = False) -> int:
    """The whole demo; returns the exit status.  ``afxdp``: the feed over a veth pair through
    two AF_XDP sockets (see the module docstring)."""
    from engine.stats import StatsRegion
    from engine.stats import remove as remove_stats
    from shm.ring import Ring
    _examples_importable()
    pid = os.getpid()
    names = (f"market-orders-{pid}", f"market-feed-{pid}", f"market-feedtx-{pid}",
             f"market-txrx-{pid}")
    link = None
    sides: dict = {}                  # --afxdp: "rx"/"tx" -> (hugering afxdp process, its ring)
    ctx = mp.get_context("spawn")
    board_raw = ctx.RawArray("q", board_words())
    board = np.frombuffer(board_raw, dtype=np.int64)
    events, go = ctx.Queue(), ctx.Event()
    rings, procs = [], []
    t_start = time.monotonic()
    out = sys.stderr
    if live is None:
        live = out.isatty() and not json_out
    try:
        sweep_stale(out)
        if afxdp:
            link = Link(pid).open()
        rings.append(Ring.create(names[0], slots=4096, slot_size=256, full_policy="wait"))
        rings.append(Ring.create(names[1], slots=16384, slot_size=2048, full_policy="wait"))
        exchange_out = names[1]
        if afxdp:
            rings.append(Ring.create(names[2], slots=16384, slot_size=2048, full_policy="wait"))
            rings.append(Ring.create(names[3], slots=64, slot_size=64))
            exchange_out = names[2]
        where = "hugetlbfs" if rings[1].backing.kind == 0 else "POSIX shared memory"
        print(f"hugering market: rings {', '.join(r.name for r in rings)} ({where})"
              + (f"; feed over veth {link.tx_if} -> {link.rx_if} (netns {link.netns}) through "
                 "AF_XDP" if afxdp else "")
              + "; compiling (the first run takes a minute, later ones a few seconds) ...",
              file=out, flush=True)
        for s in range(STRATEGIES):
            procs.append(ctx.Process(target=_strategy_main, name=f"strategy {s}",
                                     args=(names[1], s, board_raw, events, pid)))
        procs.append(ctx.Process(target=_exchange_main, name="exchange",
                                 args=(names[0], exchange_out, board_raw, events, pid)))
        if afxdp:
            sides = {"rx": (_start_side(link, link.rx_if, names[1], f"udp dst port {FEED_PORT}"),
                            rings[1]),
                     "tx": (_start_side(link, link.tx_if, names[3], "udp dst port 9",
                                        tx_ring=names[2]), rings[3])}
        procs.append(ctx.Process(target=_orders_main, name="order flow",
                                 args=(names[0], board_raw, order_rate, duration, go, events,
                                       pid)))
        for p in procs:
            p.start()
        said = Events(events, procs)
        modes = {side: _side_running(proc, ring, 300) for side, (proc, ring) in sides.items()}
        ready = said.wait("ready", {f"strategy {s}" for s in range(STRATEGIES)}
                          | {"exchange", "order flow"}, 600)
        lines = [ready[f"strategy {s}"]["line"] for s in range(STRATEGIES)]
        stats = StatsRegion.open_existing(rings[1])
        print(f"hugering market: ready in {time.monotonic() - t_start:.1f} s; "
              f"{order_rate:,.0f} orders/s for {duration:g} s", file=out, flush=True)
        go.set()
        t0 = time.monotonic()
        prev = {"t": t0, "orders": 0, "itch": 0, "fills": 0}
        # the order flow stops by itself after ``duration``; a minute more is a fault
        flow_timeout = duration + 60
        if live:
            from rich.console import Console
            from rich.live import Live
            with Live(_render(board, stats, lines, t0, prev, duration),
                      console=Console(file=out), auto_refresh=False) as lv:
                said.wait("done", {"order flow"}, flow_timeout, tick=lambda: lv.update(
                    _render(board, stats, lines, t0, prev, duration), refresh=True))
        else:
            last = [t0]

            def progress():
                if time.monotonic() - last[0] >= 5 and not json_out:
                    last[0] = time.monotonic()
                    print(f"  {last[0] - t0:4.1f} s: orders {int(board[B_GEN + 6]):,}, ITCH "
                          f"out {int(board[B_X + 3]):,}", file=out, flush=True)
            said.wait("done", {"order flow"}, flow_timeout, tick=progress)
        done = said.seen["done"]
        # drain: the exchange has published everything once its input ring is empty; the
        # strategies have read everything once the feed ring's consumers caught up
        _drain(rings, 20)
        board[B_STOP] = 1
        said.wait("done", {"exchange"}, 30)
        if afxdp:
            # the TX side has sent all the exchange wrote once it consumed feedtx; the RX side
            # has everything once the feed ring holds as many frames (lost frames never come)
            _drain(rings[2:3], 20)
            _wait_published(rings[1], done["exchange"]["packets_out"], 5)
            side_reports = {side: _stop_side(proc) for side, (proc, _) in sides.items()}
        _drain(rings[1:2], 20)
        for k in lines:
            stats.request_stop(k)
        said.wait("done", {f"strategy {s}" for s in range(STRATEGIES)}, 30)
        for p in procs:
            p.join(10)
        result = _summary(done, board, duration)
        if afxdp:
            result["afxdp"] = {
                "netns": link.netns, "veth": [link.tx_if, link.rx_if],
                "sides": {side: {"mode": modes[side],
                                 **{k: rep[k] for k in ("published", "dropped", "nic_drops",
                                                        "tx_sent", "tx_errors", "tx_lost")}}
                          for side, rep in side_reports.items()}}
        if json_out:
            print(json.dumps(result))
        else:
            print(_summary_text(result), flush=True)
        stats.close()
        return 0 if result["ok"] else 1
    except KeyboardInterrupt:
        print("hugering market: interrupted", file=out)
        return 130
    finally:
        board[B_STOP] = 1
        for proc, _ in sides.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
        for p in procs:
            if p.is_alive():
                p.terminate()
        for p in procs:
            p.join(5)
            if p.is_alive():
                p.kill()
        for r in rings:
            n = r.name
            r.close()
            Ring.remove(n)
            remove_stats(n)
        if link is not None:
            link.close()


def _drain(rings, timeout):
    from shm import layout as L
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        lagging = False
        for r in rings:
            head = int(r.ctrl[L.P_CURSOR])
            for k in range(r.max_consumers):
                base = L.C_BASE + k * L.C_WORDS
                if int(r.ctrl[base + L.C_STATE]) == L.CONSUMER_ACTIVE and \
                        int(r.ctrl[base + L.C_CURSOR]) < head:
                    lagging = True
        if not lagging:
            return
        time.sleep(0.02)


def _wait_published(ring, want: int, timeout: float) -> None:
    """Until ``ring`` has published ``want`` slots, or ``timeout`` seconds without progress."""
    from shm import layout as L
    last, t = -1, time.monotonic()
    while True:
        n = int(ring.ctrl[L.PS_PUBLISHED])
        if n >= want:
            return
        if n != last:
            last, t = n, time.monotonic()
        elif time.monotonic() - t > timeout:
            return
        time.sleep(0.02)


def _summary(done, board, duration) -> dict:
    ex = done["exchange"]
    strategies = []
    ok = True
    for s in range(STRATEGIES):
        d = done[f"strategy {s}"]
        st, rep = d["state"], d["report"]
        strategies.append({"applied": st["applied"], "gaps": st["gaps"],
                           "duplicates": st["duplicates"], "signals": st["signals"],
                           "received": rep["received"], "lost": rep["lost"],
                           "latency_ns": rep["latency_ns"], "watch": st["watch"]})
        ok &= (st["applied"] == ex["messages_out"] and st["gaps"] == 0 and rep["lost"] == 0)
    return {"ok": ok, "duration_s": duration, "order_flow": done["order flow"],
            "exchange": {k: v for k, v in ex.items() if k != "engine"},
            "matching": ex["engine"], "strategies": strategies}


def _summary_text(r: dict) -> str:
    of, ex, m = r["order_flow"], r["exchange"], r["matching"]
    lines = [f"order flow   {of['messages']:,} messages in {of['frames']:,} frames "
             f"({of['entered']:,} limit, {of['market_ioc']:,} market/IOC, {of['cancels']:,} "
             f"cancels, {of['replaces']:,} replaces)",
             f"exchange     {ex['entries_in']:,} entries -> {ex['messages_out']:,} ITCH messages "
             f"in {ex['packets_out']:,} MoldUDP64 packets; {m['fills']:,} fills, "
             f"{m['rej_unknown_ref']:,} late cancels/replaces rejected"]
    for s, st in enumerate(r["strategies"]):
        lat = st["latency_ns"]
        lines.append(f"strategy {s}   applied {st['applied']:,} ITCH messages, gaps "
                     f"{st['gaps']}, lost {st['lost']}, signals {st['signals']:,}; latency "
                     f"p50 {_ns(lat['p50'])} p99 {_ns(lat['p99'])} p99.9 {_ns(lat['p99_9'])}")
    for side, a in r.get("afxdp", {}).get("sides", {}).items():
        lines.append(f"afxdp {side}     {a['mode']}; " + (
            f"{a['published']:,} frames into the feed ring, {a['nic_drops']:,} dropped at the "
            f"socket" if side == "rx" else
            f"{a['tx_sent']:,} frames sent, {a['tx_errors']:,} errors, {a['tx_lost']:,} lost"))
    lines.append("ok: every strategy applied every published message, in order" if r["ok"]
                 else "NOT OK: a strategy missed messages (see above)")
    return "\n".join(lines)
