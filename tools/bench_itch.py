#!/usr/bin/env python3
"""Benchmark: ITCH 5.0 decode + order-book update, hugering (Numba) vs C, in the same run.

What is measured (DESIGN.md, "Performance targets", the ITCH row)
----------------------------------------------------------------
A generated trading day (``engine.producers.itch_feed``: ``--messages`` length-prefixed ITCH
5.0 messages, 10**7 by default, over ``--instruments`` stocks, 1,000 by default; start-of-day
directory and trading actions, then adds, deletes, cancels, executions, replaces, trades and
halts on live orders only, the day's trailer), already in memory as one buffer of MoldUDP64
message blocks (u16 length + message).  With 1,000 stocks the feed keeps ~10**5 orders open
and the books take ~40 MB, more than the caches hold, as a real feed handler's do;
``--instruments 64`` (~6,400 open orders, ~2.5 MB) shows the cache-resident case.  One core,
the process pinned (``--cpus``, first CPU).  One pass over the whole buffer per repeat:

* **hugering**: ``engine.book.apply_itch_blocks(state, buf, 0, len)`` called once from Python
  and timed around the call (``perf_counter_ns``): every block's length checked against its
  type's, the fields read with ``parsers.itch``'s big-endian readers and offsets, each
  A/F/E/C/X/D/U applied to full-depth books (``engine.book.Books``: the orders in an
  open-addressing table keyed by order ref, sorted price levels per side), other types
  counted; the table slot of the block 8 ahead is prefetched.
* **C**: ``tools/reference/itch_ref.c`` (``gcc -O2`` via ``bench_common.compile_c``): the same
  work written plainly in C -- the generated header ``parsers/include/hugering_itch.h`` for
  offsets and readers, the same data-structure choices as ``engine/book.py`` (the orders in the
  slots of an open-addressing table keyed by order ref, linear probing from the same home
  function, backward-shift deletion; per side a sorted key array with the best level last and
  the levels' figures after it, the sides' heads in a dense array of their own, keys counted
  16 at a time from the top over sentinel words below each side's keys, bisected below two
  blocks, birth stamps; the same refusals and counters; the same prefetch of the slot of the
  block 8 ahead), in structs of int64 fields.  It reads the very bytes from a file this
  program writes, in a child pinned to the same CPU, and times its pass with
  CLOCK_MONOTONIC.  Its big allocations ask for transparent huge pages as numpy's do (the
  hugering side's state and stream are numpy arrays), so both sides stand on the same pages.

Each repeat starts from a fresh day: the hugering state is reset by ``np.copyto`` from a
pristine ``Books`` state of the same geometry (the state is position independent: word
offsets only), the C books by rewriting all of their memory; both untimed, and both leave
every page of the books mapped.  Repeats alternate (hugering, C, hugering ...); medians are
reported.  ``msgs_per_s`` counts every message of the stream (the book messages are ~98% of them).
``ratio_vs_c`` = hugering msgs/s / C msgs/s (higher is better); ``ratio_vs_c_paired`` is the
median of the per-repeat ratios.

Correctness, in the same run (exit 1 otherwise): after a pass, both dump their books -- the 17
counters, open orders, and for every instrument and side the level count, hidden-order count
and every level (price, aggregate shares, order count) best first -- and the dumps must be
equal; the counters must also match the feed (adds = A + F messages, no unknown reference,
duplicate or over-execution, open orders = the feed's live orders); every timed pass must stop
at the end of the buffer with the same open orders and adds.

``--breakdown`` adds three passes to each repeat, on both sides, to show where the time goes:
``walk`` (only walk the blocks and check each length against its type's), ``decode`` (walk +
read every field the book path reads, folded into a checksum; no book) and ``noprefetch`` (the
full pass without the prefetch: on the hugering side a copy of ``apply_itch_blocks``'s loop
calling ``engine.book._apply``).  The checksums must agree between hugering and C, and the
no-prefetch passes must end with the same books.

``nrt`` (skip with ``--no-nrt-check``): in a child process with ``NUMBA_NRT_STATS=1``, the same
``apply_itch_blocks`` call over the first N and the first 8N messages of a day; the NRT
allocation counters must move the same (nothing scales with messages: zero allocations in the
steady-state loop, ``nrt.steady_state_allocations``).

Usage::

    python tools/bench_itch.py                    # table, 5 repeats, 10**7 messages
    python tools/bench_itch.py --json             # one JSON object on stdout
    python tools/bench_itch.py --quick --json     # smoke-test sizes (2*10**5 messages)
    python tools/bench_itch.py --breakdown        # + walk, decode and no-prefetch passes
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TOOLS = Path(__file__).resolve().parent
ROOT = TOOLS.parent
for _p in (str(ROOT), str(TOOLS)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import bench_common as BC  # noqa: E402

# before numba is imported: a cache keyed by these loops and every kernel they may inline
BC.use_numba_cache("bench_itch", [Path(__file__).resolve(), ROOT / "engine" / "book.py",
                                  ROOT / "parsers" / "itch.py",
                                  ROOT / "engine" / "producers" / "itch_feed.py"])

import numpy as np  # noqa: E402
from numba import njit  # noqa: E402

from engine import book as B  # noqa: E402
from engine.producers import itch_feed as F  # noqa: E402
from parsers import itch as I  # noqa: E402
from parsers.itch import be8, be16, be32, be64  # noqa: E402

REF_SOURCE = TOOLS / "reference" / "itch_ref.c"
ITCH_INCLUDE = ROOT / "parsers" / "include"

DEFAULTS = dict(messages=10_000_000, instruments=1000, levels=256, seed=1, nrt_messages=20_000)
QUICK = dict(messages=200_000)
TARGETS = {"msgs_per_s": 20e6, "ratio_vs_c": 0.9, "nrt_steady_state_allocations": 0}
MODES = ("walk", "decode", "noprefetch")   # the --breakdown passes (besides "full")
N_COUNTERS = len(B.COUNTER_NAMES)

_K = dict(cache=True, nogil=True, _nrt=False)


# --- breakdown passes (hugering side; itch_ref.c has their twins) ---------------------------
@njit(**_K)
def walk_blocks(buf, off, end):
    """Walk the blocks as ``apply_itch_blocks`` does, nothing else: (stop, sum of the type
    bytes of the well-formed blocks)."""
    s = 0
    while end - off >= 2:
        n = be16(buf, off)
        if end - off - 2 < n:
            break
        if n != 0 and I.MSG_LEN[buf[off + 2]] == n:
            s += buf[off + 2]
        off += 2 + n
    return off, s


@njit(**_K)
def decode_blocks(buf, off, end):
    """Walk + read every field ``engine.book._apply`` reads (same readers, same order of
    types), summed into a checksum; no book.  (stop, checksum)."""
    s = 0
    while end - off >= 2:
        n = be16(buf, off)
        if end - off - 2 < n:
            break
        m = off + 2
        if n != 0 and I.MSG_LEN[buf[m]] == n:
            t = buf[m]
            if t == I.MSG_ORDER_DELETE:
                s += be64(buf, m + I.D_ORDER_REF)
            elif t == I.MSG_ADD_ORDER:
                s += (be16(buf, m + I.LOCATE) + be64(buf, m + I.A_ORDER_REF) +
                      be8(buf, m + I.A_SIDE) + be32(buf, m + I.A_SHARES) +
                      be32(buf, m + I.A_PRICE))
            elif t == I.MSG_ORDER_REPLACE:
                s += (be64(buf, m + I.U_ORDER_REF) + be64(buf, m + I.U_NEW_ORDER_REF) +
                      be32(buf, m + I.U_SHARES) + be32(buf, m + I.U_PRICE))
            elif t == I.MSG_ORDER_EXECUTED:
                s += be64(buf, m + I.E_ORDER_REF) + be32(buf, m + I.E_EXECUTED_SHARES)
            elif t == I.MSG_ORDER_CANCEL:
                s += be64(buf, m + I.X_ORDER_REF) + be32(buf, m + I.X_CANCELED_SHARES)
            elif t == I.MSG_ADD_ORDER_MPID:
                s += (be16(buf, m + I.LOCATE) + be64(buf, m + I.F_ORDER_REF) +
                      be8(buf, m + I.F_SIDE) + be32(buf, m + I.F_SHARES) +
                      be32(buf, m + I.F_PRICE))
            elif t == I.MSG_ORDER_EXECUTED_PRICE:
                s += be64(buf, m + I.C_ORDER_REF) + be32(buf, m + I.C_EXECUTED_SHARES)
            else:
                s += 1
        off += 2 + n
    return off, s


@njit(**_K)
def apply_blocks_noprefetch(b, buf, off, end):
    """``engine.book.apply_itch_blocks`` without its prefetch (the breakdown's ``noprefetch``)."""
    while end - off >= 2:
        n = be16(buf, off)
        if end - off - 2 < n:
            break
        if n == 0 or I.MSG_LEN[buf[off + 2]] != n:
            b[B.C_ITCH_BAD] += 1
        else:
            B._apply(b, buf, off + 2, buf[off + 2])
        off += 2 + n
    return off


@njit(cache=True, nogil=True)
def dump_books(b, n_instr, levels, out):
    """The books in itch_ref.c's dump format (see there): counters, open orders, then per
    locate and side: levels, hidden, ``levels`` x (price, shares, orders) best first."""
    out[:] = 0
    for k in range(N_COUNTERS):
        out[k] = b[B.COUNTERS + k]
    out[N_COUNTERS] = b[B.H_OPEN]
    row = 2 + 3 * levels
    tmp = np.zeros((levels, 3), np.int64)
    p = N_COUNTERS + 1
    for loc in range(1, n_instr + 1):
        for s in range(2):
            out[p] = B.level_count(b, loc, s)
            out[p + 1] = B.hidden_count(b, loc, s)
            m = B.depth(b, loc, s, levels, tmp)
            for j in range(m):
                out[p + 2 + 3 * j] = tmp[j, 0]
                out[p + 3 + 3 * j] = tmp[j, 1]
                out[p + 4 + 3 * j] = tmp[j, 2]
            p += row
    return p


def dump_words(n_instr: int, levels: int) -> int:
    return N_COUNTERS + 1 + 2 * n_instr * (2 + 3 * levels)


# --- NRT check (a child process: NUMBA_NRT_STATS must be set before numba is imported) ------
def nrt_child(n: int, instruments: int, levels: int, seed: int) -> dict:
    from numba.core.runtime import rtsys

    buf, offsets, st = F.generate(8 * n + 2 * instruments + 8, instruments=instruments,
                                  seed=seed)
    tmpl = B.Books(instruments, 2 * st["max_live_orders"] + 1024, levels)
    work = B.Books(instruments, tmpl.max_orders, tmpl.max_levels)
    B.apply_itch_blocks(work.state, buf, 0, int(offsets[100]))     # compiled / loaded first

    def stats():
        s = rtsys.get_allocation_stats()
        return [s.alloc, s.free, s.mi_alloc, s.mi_free]

    def rnd(k):
        np.copyto(work.state, tmpl.state)
        end = int(offsets[k])
        before = stats()
        stop = B.apply_itch_blocks(work.state, buf, 0, end)
        after = stats()
        if stop != end:
            raise BC.BenchError(f"nrt check: the walk stopped at {stop}, not {end}")
        return [a - b for a, b in zip(after, before)]

    rnd(n)
    small, large = rnd(n), rnd(8 * n)
    return {"messages": [n, 8 * n], "small": small, "large": large,
            "fields": ["alloc", "free", "mi_alloc", "mi_free"],
            "steady_state_allocations": large[0] - small[0] + large[2] - small[2],
            "ok": small == large and large[0] == large[1] and large[2] == large[3]}


def nrt_check(opts) -> dict:
    env = BC.child_env({"NUMBA_NRT_STATS": "1"})
    cmd = [sys.executable, str(Path(__file__).resolve()), "--nrt-child",
           str(opts.nrt_messages), "--instruments", str(opts.instruments), "--levels",
           str(opts.levels), "--seed", str(opts.seed)]
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=600,
                       preexec_fn=BC.pinned_preexec(opts.cpus[0]))
    if p.returncode != 0:
        raise BC.BenchError(f"the NRT check failed:\n$ {' '.join(cmd)}\n{p.stderr[-4000:]}")
    return BC.last_json_line(p.stdout)


# --- the run -------------------------------------------------------------------------------------
class Bench:
    def __init__(self, opts):
        self.o = opts
        BC.progress(f"generating {opts.messages:,} ITCH messages over {opts.instruments} "
                    f"instruments (seed {opts.seed}) ...")
        self.feed = F.Feed(opts.instruments, seed=opts.seed)
        buf, _offsets, self.fstats = self.feed.generate(opts.messages)
        del _offsets
        self.buf = buf.copy()                    # own the bytes (generate over-allocates)
        del buf
        self.nbytes = int(self.buf.size)
        self.max_orders = 2 * self.fstats["max_live_orders"] + 1024
        L = opts.levels
        self.pristine = B.Books(opts.instruments, self.max_orders, L)
        self.work = B.Books(opts.instruments, self.max_orders, L)
        self.tmp = tempfile.TemporaryDirectory(prefix="bench_itch-")
        self.stream_file = os.path.join(self.tmp.name, "stream.bin")
        self.buf.tofile(self.stream_file)
        exe = BC.compile_c(REF_SOURCE, include_dirs=[ITCH_INCLUDE])
        self.c = BC.Server("C itch_ref", [exe, self.stream_file, self.nbytes, opts.instruments,
                                          self.max_orders, L], cpu=opts.cpus[0])

    def close(self):
        try:
            self.c.close()
        finally:
            self.tmp.cleanup()

    # one pass each; "ns" is per message
    def hugering(self, mode: str = "full") -> dict:
        n = self.o.messages
        np.copyto(self.work.state, self.pristine.state)       # a fresh day, untimed
        b, buf, end = self.work.state, self.buf, self.nbytes
        if mode in ("full", "noprefetch"):
            fn = B.apply_itch_blocks if mode == "full" else apply_blocks_noprefetch
            t0 = time.perf_counter_ns()
            stop = fn(b, buf, 0, end)
            t1 = time.perf_counter_ns()
            extra = {"open_orders": int(b[B.H_OPEN]), "adds": int(b[B.C_ADD])}
        else:
            fn = walk_blocks if mode == "walk" else decode_blocks
            t0 = time.perf_counter_ns()
            stop, s = fn(buf, 0, end)
            t1 = time.perf_counter_ns()
            extra = {"sum": int(s)}
        return {"ns": (t1 - t0) / n, "stop": int(stop), **extra}

    def c_run(self, mode: str = "full") -> dict:
        self.c.send(f"run {mode}")
        r = self.c.recv_json(timeout=600)
        out = {"ns": r["elapsed_ns"] / self.o.messages, "stop": int(r["stop"])}
        if mode in ("full", "noprefetch"):
            out.update(open_orders=int(r["open_orders"]), adds=int(r["adds"]))
        else:
            out["sum"] = int(r["sum"])
        return out

    def verify(self) -> dict:
        """One pass each, then the two dumps must be equal and agree with the feed."""
        h = self.hugering()
        c = self.c_run()
        for name, r in (("hugering", h), ("C", c)):
            if r["stop"] != self.nbytes:
                raise BC.BenchError(f"{name} stopped at byte {r['stop']} of {self.nbytes}")
        L, n = self.o.levels, self.o.instruments
        hd = np.zeros(dump_words(n, L), np.int64)
        dump_books(self.work.state, n, L, hd)
        path = os.path.join(self.tmp.name, "c_books.bin")
        self.c.send(f"dump {path}")
        self.c.recv_json(timeout=300)
        cd = np.fromfile(path, np.int64)
        if cd.shape != hd.shape:
            raise BC.BenchError(f"C dumped {cd.size} words, hugering {hd.size}")
        if not np.array_equal(cd, hd):
            raise BC.BenchError("C and hugering books differ: " + describe_diff(hd, cd, n, L))
        cnt = dict(zip(B.COUNTER_NAMES, (int(v) for v in hd[:N_COUNTERS])))
        by = self.fstats["by_type"]
        want = {"adds": by.get("A", 0) + by.get("F", 0),
                "executes": by.get("E", 0) + by.get("C", 0), "cancels": by.get("X", 0),
                "deletes": by.get("D", 0), "replaces": by.get("U", 0),
                "itch_ignored": sum(v for k, v in by.items() if k not in "AFECXDU"),
                "unknown_ref": 0, "dup_ref": 0, "over_exec": 0, "itch_bad": 0,
                "orders_full": 0, "bad_locate": 0, "bad_arg": 0}
        bad = {k: (cnt[k], v) for k, v in want.items() if cnt[k] != v}
        open_orders = int(hd[N_COUNTERS])
        if bad or open_orders != self.fstats["live_orders"]:
            raise BC.BenchError(f"the books do not replay the feed: counters (got, want) {bad}, "
                                f"open orders {open_orders} vs the feed's "
                                f"{self.fstats['live_orders']}")
        rows = hd[N_COUNTERS + 1:].reshape(n, 2, 2 + 3 * L)
        levels = rows[:, :, 0]
        best = rows[:, :, 2:5]
        self.expect = {"open_orders": open_orders, "adds": cnt["adds"]}
        return {
            "agree": True,
            "compared": ["counters", "open_orders", "levels", "hidden",
                         "every level (price, shares, orders)"],
            "instruments_compared": n,
            "levels_compared": int(levels.sum()),
            "open_orders": open_orders,
            "both_sides_quoted": int(((levels[:, 0] > 0) & (levels[:, 1] > 0)).sum()),
            "max_levels_per_side": int(levels.max()) if levels.size else 0,
            "hidden_orders": int(rows[:, :, 1].sum()),
            "counters": cnt,
            "best_locate_1": {"bid": [int(v) for v in best[0, 0]],
                              "ask": [int(v) for v in best[0, 1]]},
        }

    def verify_breakdown(self) -> dict:
        out = {}
        for mode in MODES:
            h, c = self.hugering(mode), self.c_run(mode)
            if mode == "noprefetch":
                want = {"stop": self.nbytes, **self.expect}
                for name, x in (("hugering", h), ("C", c)):
                    got = {k: x[k] for k in want}
                    if got != want:
                        raise BC.BenchError(f"{name} noprefetch pass ended with {got}, not {want}")
                continue
            if h["sum"] != c["sum"] or h["stop"] != c["stop"] or h["stop"] != self.nbytes:
                raise BC.BenchError(f"{mode}: hugering (stop {h['stop']}, sum {h['sum']}) and C "
                                    f"(stop {c['stop']}, sum {c['sum']}) disagree")
            out[mode] = h["sum"]
        return out


def describe_diff(hd, cd, n, L) -> str:
    d = np.nonzero(hd != cd)[0]
    i = int(d[0])
    if i < N_COUNTERS:
        return f"counter {B.COUNTER_NAMES[i]}: hugering {hd[i]}, C {cd[i]}"
    if i == N_COUNTERS:
        return f"open orders: hugering {hd[i]}, C {cd[i]}"
    row = 2 + 3 * L
    k = (i - N_COUNTERS - 1) // row
    loc, side = k // 2 + 1, k % 2
    base = N_COUNTERS + 1 + k * row
    return (f"{len(d)} words; first at locate {loc} side {'bid ask'.split()[side]}: "
            f"hugering {hd[base:base + 5].tolist()}, C {cd[base:base + 5].tolist()}")


def run(opts) -> dict:
    BC.pin(opts.cpus[0])
    nrt = None
    if opts.nrt_check:
        BC.progress(f"NRT check: the loop over {opts.nrt_messages:,} and "
                    f"{8 * opts.nrt_messages:,} messages in a child with NUMBA_NRT_STATS=1 ...")
        nrt = nrt_check(opts)
        BC.progress(f"  allocations (alloc, free, mi_alloc, mi_free): {nrt['small']} vs "
                    f"{nrt['large']}: {'ok' if nrt['ok'] else 'NOT ZERO IN STEADY STATE'}")
    bench = Bench(opts)
    try:
        BC.progress(f"{bench.nbytes:,} bytes; books for {bench.max_orders:,} orders, "
                    f"{opts.levels} levels per side; compiling and verifying ...")
        ver = bench.verify()
        BC.progress(f"verified: hugering and C books equal ({ver['levels_compared']:,} levels, "
                    f"{ver['open_orders']:,} open orders over {opts.instruments} instruments)")
        sums = bench.verify_breakdown() if opts.breakdown else None
        gc.collect()
        gc.disable()
        cases = {"hugering": lambda r: bench.hugering(), "c": lambda r: bench.c_run()}
        if opts.breakdown:
            for mode in MODES:
                cases[f"hugering_{mode}"] = lambda r, m=mode: bench.hugering(m)
                cases[f"c_{mode}"] = lambda r, m=mode: bench.c_run(m)
        try:
            res = BC.run_alternating(cases, opts.repeats)
        finally:
            gc.enable()
        for name in ("hugering", "c"):
            for x in res[name]:
                got = {"stop": x["stop"], "open_orders": x["open_orders"], "adds": x["adds"]}
                want = {"stop": bench.nbytes, **bench.expect}
                if got != want:
                    raise BC.BenchError(f"{name}: a timed pass ended with {got}, not {want}")
        if opts.breakdown:
            for name, x in res.items():
                mode = name.rsplit("_", 1)[-1]
                if mode in ("walk", "decode") and any(y["sum"] != sums[mode] for y in x):
                    raise BC.BenchError(f"{name}: a timed pass's checksum differs")
                if mode == "noprefetch" and any(
                        (y["stop"], y["open_orders"], y["adds"]) !=
                        (bench.nbytes, bench.expect["open_orders"], bench.expect["adds"])
                        for y in x):
                    raise BC.BenchError(f"{name}: a timed pass ended with other books")
    finally:
        bench.close()
    n = opts.messages
    ns = {k: BC.summarize(x["ns"] for x in v) for k, v in res.items()}
    rate = {k: BC.summarize(1e9 / x["ns"] for x in v) for k, v in res.items()}
    med = {k: v["median"] for k, v in ns.items()}
    paired = BC.summarize(c["ns"] / h["ns"] for h, c in zip(res["hugering"], res["c"]))
    msgs_per_s = 1e9 / med["hugering"]
    c_msgs_per_s = 1e9 / med["c"]
    out = {
        "benchmark": "itch",
        "msgs_per_s": msgs_per_s,
        "c_msgs_per_s": c_msgs_per_s,
        "ratio_vs_c": msgs_per_s / c_msgs_per_s,
        "ratio_vs_c_paired": paired["median"],
        "ns_per_msg": med["hugering"],
        "c_ns_per_msg": med["c"],
        "messages": n,
        "instruments": opts.instruments,
        "bytes": bench.nbytes,
        "max_orders": bench.max_orders,
        "max_levels": opts.levels,
        "targets": dict(TARGETS),
        "meets_targets": {
            "msgs_per_s": msgs_per_s >= TARGETS["msgs_per_s"],
            "ratio_vs_c": msgs_per_s / c_msgs_per_s >= TARGETS["ratio_vs_c"],
            "nrt_steady_state_allocations": (None if nrt is None else
                                             bool(nrt["ok"]) and
                                             nrt["steady_state_allocations"] == 0),
        },
        "hugering": {"msgs_per_s": rate["hugering"], "ns_per_msg": ns["hugering"]},
        "c": {"msgs_per_s": rate["c"], "ns_per_msg": ns["c"]},
        "verification": ver,
        "nrt": nrt,
        "feed": {k: bench.fstats[k] for k in ("messages", "live_orders", "max_live_orders",
                                              "order_refs", "halts", "by_type", "seed",
                                              "messages_per_s")},
        "repeats": opts.repeats,
        "cpu": opts.cpus[0],
        "machine": BC.machine_info(),
    }
    if opts.breakdown:
        bd = {}
        for impl in ("hugering", "c"):
            walk, dec, full = med[f"{impl}_walk"], med[f"{impl}_decode"], med[impl]
            nopf = med[f"{impl}_noprefetch"]
            bd[impl] = {"walk_ns": walk, "decode_ns": dec, "full_ns": full,
                        "noprefetch_ns": nopf, "fields_ns": dec - walk, "book_ns": full - dec,
                        "prefetch_saves_ns": nopf - full,
                        "walk": ns[f"{impl}_walk"], "decode": ns[f"{impl}_decode"],
                        "noprefetch": ns[f"{impl}_noprefetch"]}
        bd["checksums"] = sums
        out["breakdown"] = bd
    return out


def table(r: dict) -> str:
    rows = [["hugering", r["ns_per_msg"], r["msgs_per_s"] / 1e6,
             r["hugering"]["ns_per_msg"]["min"], r["hugering"]["ns_per_msg"]["max"]],
            ["C", r["c_ns_per_msg"], r["c_msgs_per_s"] / 1e6,
             r["c"]["ns_per_msg"]["min"], r["c"]["ns_per_msg"]["max"]]]
    s = BC.format_table(["impl", "ns/msg", "M msgs/s", "min ns", "max ns"], rows)
    v = r["verification"]
    s += (f"\n\n{r['messages']:,} messages ({r['bytes']:,} bytes), {r['instruments']} instruments,"
          f" {r['repeats']} repeats on CPU {r['cpu']}\nratio_vs_c {r['ratio_vs_c']:.3f} (paired "
          f"{r['ratio_vs_c_paired']:.3f}; target >= {TARGETS['ratio_vs_c']}); target >= "
          f"{TARGETS['msgs_per_s'] / 1e6:.0f} M msgs/s\nverified: books equal "
          f"({v['levels_compared']:,} levels, {v['open_orders']:,} open orders)")
    if r["nrt"] is not None:
        s += (f"\nNRT allocations over {r['nrt']['messages']} messages: {r['nrt']['small']} vs "
              f"{r['nrt']['large']} ({'none in steady state' if r['nrt']['ok'] else 'LEAK'})")
    if "breakdown" in r:
        bd = r["breakdown"]
        s += "\n\nbreakdown (ns/msg, medians)\n" + BC.format_table(
            ["impl", "walk", "+ fields", "+ book", "full", "no prefetch"],
            [[k, bd[k]["walk_ns"], bd[k]["fields_ns"], bd[k]["book_ns"], bd[k]["full_ns"],
              bd[k]["noprefetch_ns"]] for k in ("hugering", "c")])
    return s


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    BC.add_common_args(ap, default_repeats=5, quick_repeats=1,
                       default_cpus="1" if (os.cpu_count() or 1) > 1 else "0")
    ap.add_argument("--messages", type=int, default=None,
                    help=f"messages in the generated day (default {DEFAULTS['messages']:,}; "
                         f"{QUICK['messages']:,} with --quick)")
    ap.add_argument("--instruments", type=int, default=DEFAULTS["instruments"],
                    help=f"stocks in the day (default {DEFAULTS['instruments']}: ~10**5 open "
                         f"orders, ~40 MB of books; 64 keeps the books in the caches)")
    ap.add_argument("--levels", type=int, default=DEFAULTS["levels"],
                    help=f"visible price levels per book side (default {DEFAULTS['levels']})")
    ap.add_argument("--seed", type=int, default=DEFAULTS["seed"])
    ap.add_argument("--breakdown", action="store_true",
                    help="also time walk-only and decode-only passes on both sides")
    ap.add_argument("--no-nrt-check", dest="nrt_check", action="store_false",
                    help="skip the NRT allocation check (a child process)")
    ap.add_argument("--nrt-messages", type=int, default=DEFAULTS["nrt_messages"],
                    help=f"N of the NRT check (N vs 8N messages; default "
                         f"{DEFAULTS['nrt_messages']:,})")
    ap.add_argument("--nrt-child", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    BC.set_quiet(False)
    try:
        if args.nrt_child is not None:
            print(json.dumps(nrt_child(args.nrt_child, args.instruments, args.levels,
                                       args.seed)))
            return 0
        BC.check_cpus(args.cpus[:1])
        args.repeats = BC.repeats(args)
        args.messages = args.messages or (QUICK if args.quick else DEFAULTS)["messages"]
        if args.instruments < 1 or args.instruments > 65535:
            raise BC.BenchError("--instruments must be in 1..65535")
        if args.messages < 2 * args.instruments + 6:
            raise BC.BenchError(f"--messages must be >= {2 * args.instruments + 6} (the start "
                                f"and end of the day)")
        if args.levels < 1 or args.nrt_messages < 100:
            raise BC.BenchError("--levels must be >= 1 and --nrt-messages >= 100")
        result = run(args)
    except BC.BenchError as e:
        print(f"bench_itch: error: {e}", file=sys.stderr)
        return 1
    BC.emit(result, args.json, table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
