#!/usr/bin/env python3
"""Benchmark: the matching engine (engine/matching.py) and the ITCH order books (engine/book.py),
hugering vs a straightforward C implementation of the same algorithms, in the same run.

What is measured
----------------
**Matching engine.**  ``--messages`` order-entry messages (the OUCH-5.0-like subset of
engine/matching.py) over ``--instruments`` instruments, made by the seeded ``@njit`` generator
below: 52% new orders (8% market, 12% IOC limit, 80% day limit: most passive within a few ticks
of the instrument's mid, 15% marketable), 33% cancels (85% full, 15% partial) and 15% replaces
(same price smaller, another price, or bigger), the cancels and replaces aimed at recently
entered day orders (the youngest most often; some have traded away meanwhile and are
rejected, as at a real venue).  Mids random-walk one tick at a time.  One core, pinned
(``--cpus``, first CPU).

* **hugering**: ``process_stream`` over the whole stream (every message decoded, matched,
  its ITCH 5.0 output encoded as MoldUDP64 message blocks into a preallocated buffer).
* **C**: ``tools/reference/match_ref.c`` (``gcc -O2`` via ``bench_common.compile_c``), the same
  engine written plainly in C (same data layout, same rules, same output bytes), reading the
  same stream from a file, in a child pinned to the same CPU.  The program fails unless both
  produce byte-identical ITCH output (FNV-1a hash of all of it) and the same counters.

``ops_per_s`` is messages per second (the median over ``--repeats``, each on a fresh engine
whose memory is touched beforehand).  ``ratio_vs_c`` = hugering ops/s / C ops/s.

**Latency** (``latency_ns``): the service time of each ``process_entry`` call, back to back
(no queueing: the stream is in memory), output included.  Each call is bracketed by two reads
of the TSC (``llvm.readcyclecounter`` through a Numba intrinsic here, ``__rdtsc`` in C; ~10 ns
each on this machine and included in every sample: ``timer_overhead_ns`` is the median of an
empty bracket), converted to ns with a frequency calibrated against CLOCK_MONOTONIC over 50 ms.
Samples go into a preallocated array (no allocation); p50/p99/p99.9/p99.99 are exact over all
messages of one pass (``c_latency_ns``: the same for C).  Tail figures on this 2-vCPU virtual
machine are set by the hypervisor (DESIGN.md).

**Order books** (``book``): ``engine/producers/itch_feed``'s generated trading day
(``--book-messages`` MoldUDP64 message blocks over ``--book-instruments`` stocks, already in
memory) applied with ``engine.book.apply_itch_blocks`` (decode each block's fields from the
bytes and update the book), vs the same in C (``match_ref book``); both must end with the same
open orders, level count and aggregate shares.  ``updates_per_s`` = messages / s.

Usage::

    python tools/bench_match.py                  # table, 5 repeats
    python tools/bench_match.py --json           # one JSON object on stdout
    python tools/bench_match.py --quick --json   # smoke-test sizes
"""
from __future__ import annotations

import argparse
import gc
import os
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

# before numba is imported: a cache keyed by these loops and the kernels they inline
BC.use_numba_cache("bench_match", [Path(__file__).resolve(), ROOT / "engine" / "matching.py",
                                   ROOT / "engine" / "book.py", ROOT / "parsers" / "itch.py",
                                   ROOT / "engine" / "producers" / "itch_feed.py"])

import numpy as np  # noqa: E402
from llvmlite import ir  # noqa: E402
from numba import njit, types  # noqa: E402
from numba.extending import intrinsic  # noqa: E402

from engine import book as B  # noqa: E402
from engine import matching as M  # noqa: E402

REF_SOURCE = TOOLS / "reference" / "match_ref.c"
_K = dict(cache=True, nogil=True, _nrt=False)


# --- the TSC ---------------------------------------------------------------------------------
@intrinsic
def _readcyclecounter(typingctx):
    def codegen(context, builder, sig, args):
        fnty = ir.FunctionType(ir.IntType(64), [])
        fn = builder.module.declare_intrinsic("llvm.readcyclecounter", fnty=fnty)
        return builder.call(fn, [])
    return types.int64(), codegen


@njit(**_K)
def rdtsc():
    return _readcyclecounter()


@njit(**_K)
def _tsc_overhead(samples):
    for i in range(samples.shape[0]):
        t0 = _readcyclecounter()
        t1 = _readcyclecounter()
        samples[i] = t1 - t0


def tsc_hz(ms: int = 50) -> float:
    """TSC ticks per second, against CLOCK_MONOTONIC (both read back to back, warm)."""
    rdtsc()
    time.monotonic_ns()
    t0 = time.monotonic_ns()
    c0 = rdtsc()
    while time.monotonic_ns() - t0 < ms * 1_000_000:
        pass
    c1 = rdtsc()
    t1 = time.monotonic_ns()
    return (c1 - c0) * 1e9 / (t1 - t0)


# --- the order-entry stream ---------------------------------------------------------------------
@njit(**_K)
def _rand(g):
    """31 random bits (splitmix64: the same numbers on every machine)."""
    z = np.uint64(g[0]) + np.uint64(0x9E3779B97F4A7C15)
    g[0] = np.int64(z)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    return np.int64(z >> np.uint64(33))


@njit(**_K)
def _below(g, n):
    """Uniform in [0, n), n < 2**32 (multiply-shift, no division)."""
    return (_rand(g) * n) >> 31


RECENT = 4096          # day orders remembered for cancels and replaces


@njit(**_K)
def generate_entries(buf, n, n_instr, g, mids, recent):
    """``n`` order-entry messages back to back into ``buf``; returns the bytes written.
    ``recent`` (RECENT, 5): user ref, locate, side, qty, price of recent day orders."""
    o = 0
    next_uref = 1
    nrec = 0
    hot = n_instr // 8 if n_instr >= 8 else 1
    tick = 100
    for _ in range(n):
        u = _below(g, 1000)
        if u < 520 or nrec == 0:
            if _below(g, 2) == 1:
                loc = 1 + _below(g, hot)                       # half to the busy eighth
            else:
                loc = 1 + _below(g, n_instr)
            side = _below(g, 2)
            k = _below(g, 100)
            mid = mids[loc]
            tif = 48                                           # '0' day
            typ = 76                                           # 'L' limit
            if k < 8:
                typ = 77                                       # 'M' market
                px = 0
            elif k < 20:
                tif = 51                                       # '3' IOC, aggressive
                d = _below(g, 3)
                px = mid + d * tick if side == 0 else mid - d * tick
            elif _below(g, 100) < 15:
                d = _below(g, 3)                               # day, marketable
                px = mid + d * tick if side == 0 else mid - d * tick
            else:
                d = 1
                while d < 12 and _below(g, 4) != 0:            # day, mostly near the mid
                    d += 1
                px = mid - d * tick if side == 0 else mid + d * tick
            if px <= 0 and typ == 76:
                px = tick
            if _below(g, 10) < 8:
                qty = 100 * (1 + _below(g, 5))
            else:
                qty = 1 + _below(g, 999)
            uref = next_uref
            next_uref += 1
            o = M.put_enter(buf, o, uref, 66 if side == 0 else 83, qty, loc, px, tif, typ)
            if typ == 76 and tif == 48:
                j = nrec & (RECENT - 1)
                recent[j, 0] = uref
                recent[j, 1] = loc
                recent[j, 2] = side
                recent[j, 3] = qty
                recent[j, 4] = px
                nrec += 1
            if _below(g, 8) == 0:                              # the mid walks
                mids[loc] += tick if _below(g, 2) == 1 else -tick
                if mids[loc] < 10 * tick:
                    mids[loc] = 10 * tick
        else:
            # the youngest orders most often: age ~ geometric
            age = 0
            lim = min(nrec, RECENT) - 1
            while age < lim and _below(g, 2) == 1:
                age += 1 + _below(g, 4)
            if age > lim:
                age = lim
            j = (nrec - 1 - age) & (RECENT - 1)
            uref = recent[j, 0]
            if u < 850:
                qty = 0 if _below(g, 100) < 85 else recent[j, 3] // 2
                o = M.put_cancel(buf, o, uref, qty)
            else:
                loc = recent[j, 1]
                side = recent[j, 2]
                v = _below(g, 100)
                qty = recent[j, 3]
                px = recent[j, 4]
                if v < 40:                                     # same price, smaller: keeps
                    qty = max(1, qty // 2)                     # its priority
                elif v < 80:                                   # back near the mid
                    px = mids[loc] - 200 if side == 0 else mids[loc] + 200
                    px += (_below(g, 3) - 1) * tick
                else:
                    qty = qty + 100                            # bigger: loses priority
                if px <= 0:
                    px = tick
                new = next_uref
                next_uref += 1
                o = M.put_replace(buf, o, uref, new, qty, px)
                recent[j, 0] = new
                recent[j, 3] = qty
                recent[j, 4] = px
    return o


def make_stream(n: int, n_instr: int, seed: int):
    buf = np.zeros(n * M.EO_LEN, dtype=np.uint8)
    g = np.array([seed], dtype=np.int64)
    mids = np.zeros(n_instr + 1, dtype=np.int64)
    rng = np.random.default_rng(seed)
    mids[1:] = rng.integers(1000, 20000, size=n_instr) * 100          # $10 .. $200
    recent = np.zeros((RECENT, 5), dtype=np.int64)
    end = int(generate_entries(buf, n, n_instr, g, mids, recent))
    return buf[:end]


# --- the timed loops ---------------------------------------------------------------------------
@njit(**_K)
def fnv1a(buf, n):
    h = np.int64(-3750763034362895579)
    for i in range(n):
        h = (h ^ buf[i]) * np.int64(1099511628211)
    return h


@njit(**_K)
def run_throughput(e, buf, out):
    off, o = M.process_stream(e, buf, 0, buf.shape[0], out, 0)
    return off, o


@njit(**_K)
def run_latency(e, buf, out, samples):
    """process_entry one message at a time, each bracketed by two TSC reads; returns (messages,
    output bytes)."""
    off = 0
    o = 0
    k = 0
    end = buf.shape[0]
    while off < end:
        n = M.ENTRY_LEN[buf[off]]
        if n == 0:
            break
        t0 = _readcyclecounter()
        r = M.process_entry(e, buf, off, end, out, o)
        t1 = _readcyclecounter()
        if r < 0:
            break
        samples[k] = t1 - t0
        k += 1
        o = r
        off += n
    return k, o


def fresh_engine(n_instr: int, max_orders: int, max_levels: int):
    eng = M.MatchingEngine(n_instr, max_orders, max_levels)
    eng.state += 0                  # touch every page now, not inside the timed loop
    eng.set_clock(34_200_000_000_000)
    return eng


def fresh_books(n_instr: int, max_orders: int, max_levels: int):
    bk = B.Books(n_instr, max_orders, max_levels)
    bk.state += 0
    return bk


def book_digest(state: np.ndarray, n_instr: int, max_levels: int) -> dict:
    levels = 0
    shares = 0
    out = np.zeros((max_levels, 3), dtype=np.int64)
    for loc in range(1, n_instr + 1):
        for side in (0, 1):
            n = B.depth(state, loc, side, max_levels, out)
            levels += int(n)
            shares += int(out[:n, 1].sum())
    return {"open_orders": int(state[B.H_OPEN]), "levels": levels, "shares": shares}


def engine_digest(eng) -> dict:
    c = eng.counters()
    return {k: c[k] for k in ("messages", "fills", "filled_qty", "rested", "expired_qty",
                              "deleted", "reduced", "replaced", "rej_unknown_ref")} | {
        "open_orders": eng.open_orders}


# --- the C reference ---------------------------------------------------------------------------
def c_run(exe, mode: str, path: str, args: list, cpu: int | None) -> dict:
    child = BC.Child(f"match_ref {mode}", [exe, mode, path, *map(str, args)], cpu=cpu)
    outs = BC.wait_all([child], timeout=600)
    return BC.last_json_line(outs[child.name])


# --- main ----------------------------------------------------------------------------------
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=None,
                    help="order-entry messages (default 2,000,000; 40,000 with --quick)")
    ap.add_argument("--instruments", type=int, default=256)
    ap.add_argument("--book-messages", type=int, default=None,
                    help="ITCH messages for the book (default 4,000,000; 60,000 with --quick)")
    ap.add_argument("--book-instruments", type=int, default=1000)
    ap.add_argument("--max-levels", type=int, default=256)
    ap.add_argument("--seed", type=int, default=1)
    BC.add_common_args(ap, default_repeats=5, default_cpus=str(min(BC.available_cpus())))
    args = ap.parse_args(argv)
    BC.set_quiet(args.json)
    try:
        return _run(args)
    except BC.BenchError as e:
        print(f"bench_match: {e}", file=sys.stderr)
        return 1


def _run(args) -> int:
    from engine.producers import itch_feed as F

    repeats = BC.repeats(args)
    n_msgs = args.messages or (40_000 if args.quick else 2_000_000)
    n_book = args.book_messages or (60_000 if args.quick else 4_000_000)
    n_instr = args.instruments
    L = args.max_levels
    cpu = args.cpus[0]
    BC.check_cpus([cpu])
    BC.pin(cpu)
    exe = BC.compile_c(REF_SOURCE)

    BC.progress(f"generating {n_msgs:,} order-entry messages over {n_instr} instruments ...")
    stream = make_stream(n_msgs, n_instr, args.seed)
    max_orders = n_msgs // 2 + 1024                       # never full: every day order fits
    out = np.ones(64 * n_msgs + 4096, dtype=np.uint8)      # touched: no page faults when timed
    BC.progress(f"generating the ITCH day for the books: {n_book:,} messages over "
                f"{args.book_instruments} stocks ...")
    feed = F.Feed(args.book_instruments, seed=args.seed)
    itch, _offsets, fstats = feed.generate(n_book)
    book_orders = 2 * fstats["max_live_orders"] + 1024

    tmp = tempfile.mkdtemp(prefix="hugering-bench-match-")
    spath = os.path.join(tmp, "entries.bin")
    ipath = os.path.join(tmp, "itch.bin")
    stream.tofile(spath)
    itch.tofile(ipath)
    c_args = [n_instr, max_orders, L, out.size]
    b_args = [args.book_instruments, book_orders, L]

    # --- correctness first: the same output bytes, the same books ---------------------------
    eng = fresh_engine(n_instr, max_orders, L)
    off, o = run_throughput(eng.state, stream, out)
    if off != stream.size:
        raise BC.BenchError(f"the engine stopped at byte {off} of {stream.size}")
    h = int(fnv1a(out, o))
    digest = engine_digest(eng)
    cref = c_run(exe, "match", spath, c_args + [1], cpu)
    if cref["out_bytes"] != o or cref["out_hash"] != h:
        raise BC.BenchError(f"C and hugering ITCH output differ: {o} bytes hash {h:x} vs "
                            f"{cref['out_bytes']} bytes hash {cref['out_hash']:x}")
    for k, v in digest.items():
        if cref["counters"].get(k) != v:
            raise BC.BenchError(f"C and hugering differ in {k}: {cref['counters'].get(k)} vs {v}")
    bk = fresh_books(args.book_instruments, book_orders, L)
    if B.apply_itch_blocks(bk.state, itch, 0, itch.size) != itch.size:
        raise BC.BenchError("apply_itch_blocks stopped early")
    bdig = book_digest(bk.state, args.book_instruments, L)
    cbook = c_run(exe, "book", ipath, b_args + [1], cpu)
    if cbook["digest"] != bdig:
        raise BC.BenchError(f"C and hugering books differ: {cbook['digest']} vs {bdig}")
    BC.progress(f"checks passed: {o:,} output bytes identical, books identical ({bdig})")

    # --- timed repeats, alternating -------------------------------------------------------------
    hz = tsc_hz()
    samples = np.zeros(n_msgs, dtype=np.int64)
    ov = np.zeros(100_000, dtype=np.int64)
    _tsc_overhead(ov)

    def hugering_match(_r):
        e = fresh_engine(n_instr, max_orders, L)
        gc.collect()
        t = time.perf_counter_ns()
        run_throughput(e.state, stream, out)
        dt = time.perf_counter_ns() - t
        e = fresh_engine(n_instr, max_orders, L)
        k, _ = run_latency(e.state, stream, out, samples)
        lat = BC.percentiles(samples[:k] * (1e9 / hz))
        return {"ops_per_s": n_msgs / (dt * 1e-9), "ns_per_op": dt / n_msgs, "latency": lat}

    def c_match(_r):
        r = c_run(exe, "match", spath, c_args + [0], cpu)
        return {"ops_per_s": n_msgs / (r["ns"] * 1e-9), "ns_per_op": r["ns"] / n_msgs,
                "latency": {k: r["latency_cycles"][k] * 1e9 / r["tsc_hz"]
                            for k in r["latency_cycles"]}}

    def hugering_book(_r):
        b = fresh_books(args.book_instruments, book_orders, L)
        gc.collect()
        t = time.perf_counter_ns()
        B.apply_itch_blocks(b.state, itch, 0, itch.size)
        dt = time.perf_counter_ns() - t
        return {"updates_per_s": n_book / (dt * 1e-9), "ns_per_msg": dt / n_book}

    def c_book(_r):
        r = c_run(exe, "book", ipath, b_args + [0], cpu)
        return {"updates_per_s": n_book / (r["ns"] * 1e-9), "ns_per_msg": r["ns"] / n_book}

    res = BC.run_alternating({"hugering_match": hugering_match, "c_match": c_match,
                              "hugering_book": hugering_book, "c_book": c_book}, repeats)

    def med(case, key):
        return BC.summarize([r[key] for r in res[case]])["median"]

    def med_lat(case):
        names = res[case][0]["latency"].keys()
        return {k: BC.summarize([r["latency"][k] for r in res[case]])["median"] for k in names}

    ops = med("hugering_match", "ops_per_s")
    c_ops = med("c_match", "ops_per_s")
    bup = med("hugering_book", "updates_per_s")
    c_bup = med("c_book", "updates_per_s")
    result = {
        "ops_per_s": ops,
        "ns_per_op": med("hugering_match", "ns_per_op"),
        "latency_ns": med_lat("hugering_match"),
        "c_ops_per_s": c_ops,
        "c_ns_per_op": med("c_match", "ns_per_op"),
        "c_latency_ns": med_lat("c_match"),
        "ratio_vs_c": ops / c_ops,
        "ratio_vs_c_paired": BC.summarize([a["ops_per_s"] / b["ops_per_s"] for a, b in
                                           zip(res["hugering_match"], res["c_match"])])["median"],
        "timer_overhead_ns": float(np.median(ov) * 1e9 / hz),
        "tsc_hz": hz,
        "target_ops_per_s": 5e6,
        "book": {
            "updates_per_s": bup,
            "ns_per_msg": med("hugering_book", "ns_per_msg"),
            "c_updates_per_s": c_bup,
            "c_ns_per_msg": med("c_book", "ns_per_msg"),
            "ratio_vs_c": bup / c_bup,
            "target_updates_per_s": 20e6,
            "messages": n_book, "instruments": args.book_instruments,
            "by_type": fstats["by_type"], "max_live_orders": fstats["max_live_orders"],
            "final": bdig,
        },
        "messages": n_msgs, "instruments": n_instr, "max_levels": L, "seed": args.seed,
        "engine_counters": digest, "output_bytes": o,
        "repeats": repeats, "cpu": cpu, "machine": BC.machine_info(),
    }
    for f in (spath, ipath):
        os.unlink(f)
    os.rmdir(tmp)
    BC.emit(result, args.json, _table)
    return 0


def _table(r) -> str:
    rows = [
        ["matcher ops/s", r["ops_per_s"], r["c_ops_per_s"], r["ratio_vs_c"]],
        ["matcher ns/op", r["ns_per_op"], r["c_ns_per_op"], None],
    ]
    for k in r["latency_ns"]:
        rows.append([f"latency {k} ns", r["latency_ns"][k], r["c_latency_ns"][k], None])
    b = r["book"]
    rows += [["book updates/s", b["updates_per_s"], b["c_updates_per_s"], b["ratio_vs_c"]],
             ["book ns/msg", b["ns_per_msg"], b["c_ns_per_msg"], None]]
    head = (f"{r['messages']:,} order-entry messages, {r['instruments']} instruments; book: "
            f"{b['messages']:,} ITCH messages, {b['instruments']} stocks; CPU {r['cpu']}, "
            f"{r['repeats']} repeats (medians); timer overhead {r['timer_overhead_ns']:.1f} ns "
            f"in each latency sample")
    return head + "\n" + BC.format_table(["", "hugering", "C", "ratio"], rows)


if __name__ == "__main__":
    sys.exit(main())
