#!/usr/bin/env python3
"""Ring benchmark: 1 producer process -> 1 consumer process through a hugering ring.

What it measures, all in the same run, with the repeats of each case alternated so that the
noise of a shared machine falls on every case alike (medians over repeats are reported):

* **hugering**: the Numba loops below (``produce`` / ``consume``, ``@njit(cache=True)``)
  calling the ring's verbs of ``shm.kernels`` (reserve / slot_base / submit, peek /
  consumer_slot / release), producer pinned to the first ``--cpus`` entry, consumer to the
  second, 64-byte payloads, bursts of 32, in Mpps (million messages per second).
* **C**: the same ring protocol in C (``shm/include/hugering_ring.h``, the twin of
  ``shm/kernels.py``) doing the same work per message (``tools/reference/ring_ref.c``,
  ``gcc -O2``), on the same kind of ring created by Python.
* **multiprocessing.Queue**: the Python standard way to move messages between processes,
  1 producer -> 1 consumer process, 64-byte ``bytes`` messages (fewer of them), M msgs/s.
* **one-way latency** for hugering and C: the producer sends one message every ``--gap-ns``
  and stamps each slot with CLOCK_REALTIME just before writing it; the consumer reads the
  clock on receipt and records ``now - ts_ns``; p50 / p99 / p99.9 / p99.99 in ns, computed
  per segment and reported as the median over all segments (``latency_ns``: a vCPU stolen
  for milliseconds spoils the segment it falls in, not the result), and over all samples
  pooled (``latency_ns_pooled``: what a consumer on this machine actually saw, stalls and
  all).

Work per message, identical on both sides: the producer reads the clock once per burst (slot
stamp and heartbeat), writes the slot header words and the payload words (``seq + w``); the
consumer checks each slot's sequence stamp, reads its captured length (clamped to the slot)
and sums the payload words.  The parent checks the message count, the stamps and the
checksum of every run, so a loop that skipped work would fail, not look fast.

Timing: each implementation gets one producer and one consumer process (pinned) over its own
ring, started once; they map the ring, load their compiled loops (the parent compiles them
into Numba's cache first, in a cache directory keyed by the content of these loops and of
``shm/``), join, and then run one *segment* per command from the parent, sleeping in between.
A repeat is ``--segments`` throughput segments of each implementation, alternating (hugering,
C, C, hugering, ...: ~0.1 s each), then as many latency segments; Mpps of a repeat is its
messages over its summed segment times, each measured by the consumer from its first message
to its last.  ``ratio_vs_c`` is the ratio of the medians over repeats; ``ratio_vs_c_paired``,
the median over all adjacent (hugering, C) segment pairs, is the steadier of the two when
the machine changes speed under the run (other tenants, vCPUs moved by the hypervisor).

Usage::

    python tools/bench_ring.py                  # table, 5 repeats
    python tools/bench_ring.py --json           # one JSON object on stdout
    python tools/bench_ring.py --quick --json   # smoke test sizes
"""
from __future__ import annotations

import argparse
import gc
import itertools
import json
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

# before numba is imported: a cache keyed by these loops and by the ring's kernels
BC.use_numba_cache("bench_ring", [Path(__file__).resolve(), *sorted((ROOT / "shm").glob("*.py"))])

import numpy as np  # noqa: E402
from numba import njit  # noqa: E402

from shm.clock import mono_ns, now_ns  # noqa: E402
from shm.kernels import (CS_CURSOR, CS_SLOT_SIZE, CS_STRIDE_W, CSTATE_WORDS,  # noqa: E402
                         PS_HEAD, PSTATE_WORDS, consumer_slot, peek, release, reserve,
                         slot_base, submit)
from shm.layout import (CONSUMER_ACTIVE, PS_FULL_WAITS, S_LENS, S_PAYLOAD,  # noqa: E402
                        S_PORTQ, S_SEQ, S_TS)

REF_SOURCE = TOOLS / "reference" / "ring_ref.c"

DEFAULTS = dict(messages=20_000_000, segments=10, latency_messages=200_000,
                mpqueue_messages=100_000, burst=32, payload=64, slots=4096, gap_ns=2_000,
                latency_warmup=1_000)
QUICK = dict(messages=400_000, segments=2, latency_messages=10_000, mpqueue_messages=5_000,
             latency_warmup=200)


# Subscripts are cast to uint64 (the arithmetic stays int64): with a signed index Numba adds
# a negative-index wraparound (compare + conditional move) to every access, which C does not
# have.  Never mix the two types in arithmetic: Numba would promote the mix to float64.
_u = np.uint64


# --- the timed loops (keep them line for line with tools/reference/ring_ref.c) -------------
@njit(cache=True, nogil=True)
def produce(ctrl, words, pstate, n, burst, payload_w, payload):
    """Publish n messages in bursts; one clock read per burst (stamp and heartbeat)."""
    lens = payload | (payload << 32)
    sent = 0
    while sent < n:
        want = burst if n - sent > burst else n - sent
        k = reserve(ctrl, words, pstate, want)
        if k == 0:
            continue                               # full: the wait policy (spin)
        now = now_ns()
        for j in range(k):
            base = slot_base(pstate, j)
            seq = pstate[PS_HEAD] + j
            words[_u(base + S_TS)] = now
            words[_u(base + S_LENS)] = lens
            words[_u(base + S_PORTQ)] = 0
            for w in range(payload_w):
                words[_u(base + S_PAYLOAD + w)] = seq + w
        submit(ctrl, words, pstate, k, now)
        sent += k
    return sent


@njit(cache=True, nogil=True)
def produce_latency(ctrl, words, pstate, n, payload_w, payload, gap_ns):
    """One message every gap_ns (no catch-up bursts), stamped just before it is written."""
    lens = payload | (payload << 32)
    nxt = now_ns()
    for _ in range(n):
        t = now_ns()
        while t < nxt:
            t = now_ns()
        nxt = t + gap_ns
        k = reserve(ctrl, words, pstate, 1)
        while k == 0:
            k = reserve(ctrl, words, pstate, 1)
        ts = now_ns()                              # the latency stamp: one read per message
        base = slot_base(pstate, 0)
        seq = pstate[PS_HEAD]
        words[_u(base + S_TS)] = ts
        words[_u(base + S_LENS)] = lens
        words[_u(base + S_PORTQ)] = 0
        for w in range(payload_w):
            words[_u(base + S_PAYLOAD + w)] = seq + w
        submit(ctrl, words, pstate, 1, ts)
    return n


@njit(cache=True, nogil=True)
def consume(ctrl, words, cstate, n, burst):
    """Read n messages in place: check each stamp, clamp the length, sum the payload.
    Returns (received, checksum, bad stamps, t_first, t_last) (CLOCK_MONOTONIC ns)."""
    sw = cstate[CS_STRIDE_W]
    size = cstate[CS_SLOT_SIZE]
    total = 0
    bad = 0
    got = 0
    t0 = 0
    while got < n:
        k = peek(ctrl, cstate, burst)
        if k <= 0:
            if k < 0:
                break                              # evicted
            continue
        if got == 0:
            t0 = mono_ns()
        cur = cstate[CS_CURSOR]
        for j in range(k):
            base = consumer_slot(cstate, j) * sw
            if words[_u(base + S_SEQ)] != cur + j:
                bad += 1
            cap_len = (words[_u(base + S_LENS)] >> 32) & 0xFFFFFFFF
            if cap_len > size:
                cap_len = size                     # never trust a length field
            pw = (cap_len + 7) >> 3
            for w in range(pw):
                total += words[_u(base + S_PAYLOAD + w)]
        if release(ctrl, cstate, k) < 0:
            break
        got += k
    t1 = mono_ns()
    return got, total, bad, t0, t1


@njit(cache=True, nogil=True)
def consume_latency(ctrl, words, cstate, n, burst, lat):
    """As ``consume``, plus one clock read per receipt: lat[i] = now - ts_ns of message i."""
    sw = cstate[CS_STRIDE_W]
    size = cstate[CS_SLOT_SIZE]
    total = 0
    bad = 0
    got = 0
    while got < n:
        k = peek(ctrl, cstate, burst)
        if k <= 0:
            if k < 0:
                break
            continue
        if k > n - got:
            k = n - got
        now = now_ns()                             # receipt: one clock read per burst received
        cur = cstate[CS_CURSOR]
        for j in range(k):
            base = consumer_slot(cstate, j) * sw
            if words[_u(base + S_SEQ)] != cur + j:
                bad += 1
            lat[_u(got + j)] = now - words[_u(base + S_TS)]
            cap_len = (words[_u(base + S_LENS)] >> 32) & 0xFFFFFFFF
            if cap_len > size:
                cap_len = size
            pw = (cap_len + 7) >> 3
            for w in range(pw):
                total += words[_u(base + S_PAYLOAD + w)]
        if release(ctrl, cstate, k) < 0:
            break
        got += k
    return got, total, bad


def expected_checksum(n: int, payload: int, first: int = 0) -> int:
    """Sum over seq first..first+n-1 and w < payload/8 of (seq + w), wrapped to int64 like the
    loops."""
    pw = payload // 8
    s = pw * (n * first + n * (n - 1) // 2) + n * pw * (pw - 1) // 2
    s &= (1 << 64) - 1
    return s - (1 << 64) if s >= 1 << 63 else s


# --- child roles: one Numba producer or consumer process ------------------------------------
def _wait_for_consumer(ring, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (ring.consumer_lines["state"] == CONSUMER_ACTIVE).any():
            return
        time.sleep(0.001)
    raise SystemExit(f"no consumer joined ring {ring.name!r} within {timeout:.0f} s")


def _commands(args):
    """The segments a child runs: the one given on its command line, or (--stdin) one per
    line read from stdin: ``tp N`` or ``lat N [FILE]``."""
    if not args.stdin:
        yield ("lat" if args.latency else "tp"), args.messages, args.samples
        return
    for line in sys.stdin:
        parts = line.split()
        if not parts:
            continue
        if parts[0] not in ("tp", "lat") or len(parts) < 2:
            raise SystemExit(f"bad command {line.strip()!r}")
        yield parts[0], int(parts[1]), (parts[2] if len(parts) > 2 else None)


def _say(obj) -> None:
    sys.stdout.write((obj if isinstance(obj, str) else json.dumps(obj)) + "\n")
    sys.stdout.flush()


def role_producer(args) -> int:
    from shm.ring import Ring

    ring = Ring.open(args.ring, writable_slots=True)
    prod = ring.producer()
    ctrl, words, pstate = prod.ctrl, prod.words, prod.pstate
    pw = args.payload // 8
    # warm-up: load the compiled loops (n = 0 publishes nothing) before anything is timed
    produce_latency(ctrl, words, pstate, 0, pw, args.payload, args.gap_ns)
    produce(ctrl, words, pstate, 0, args.burst, pw, args.payload)
    _wait_for_consumer(ring)
    gc.collect()
    gc.disable()
    for kind, n, _ in _commands(args):
        first = int(pstate[PS_HEAD])
        t0 = time.monotonic_ns()
        if kind == "lat":
            sent = produce_latency(ctrl, words, pstate, n, pw, args.payload, args.gap_ns)
        else:
            sent = produce(ctrl, words, pstate, n, args.burst, pw, args.payload)
        t1 = time.monotonic_ns()
        _say({"role": "producer", "impl": "hugering", "first_seq": first,
              "messages": int(sent), "elapsed_ns": t1 - t0,
              "full_waits": int(ctrl[PS_FULL_WAITS])})
    prod.close()
    ring.close()
    return 0


def role_consumer(args) -> int:
    from shm.ring import Ring

    ring = Ring.open(args.ring)                       # slots read-only, as any consumer
    # warm-up before joining: the same types, n = 0, a throwaway cstate (reads nothing)
    dummy = np.zeros(CSTATE_WORDS, dtype=np.int64)
    consume_latency(ring.ctrl, ring.words, dummy, 0, args.burst, np.zeros(1, np.int64))
    consume(ring.ctrl, ring.words, dummy, 0, args.burst)
    gc.collect()
    gc.disable()
    cons = ring.consumer()                            # the producer starts once we are active
    ctrl, words, cstate = cons.ctrl, cons.words, cons.cstate
    ok = True
    for kind, n, samples in _commands(args):
        first = int(cstate[CS_CURSOR])
        t0 = t1 = 0
        if kind == "lat":
            lat = np.empty(max(n, 1), dtype=np.int64)
            lat.fill(0)                               # fault the pages in before timing
            if args.stdin:
                _say("armed")
            got, total, bad = consume_latency(ctrl, words, cstate, n, args.burst, lat)
            if samples:
                lat[:got].tofile(samples)
        else:
            if args.stdin:
                _say("armed")
            got, total, bad, t0, t1 = consume(ctrl, words, cstate, n, args.burst)
        _say({"role": "consumer", "impl": "hugering", "first_seq": first,
              "messages": int(got), "elapsed_ns": int(t1 - t0), "checksum": int(total),
              "bad_seq": int(bad)})
        ok = got == n and bad == 0
        if not ok:
            break
    cons.close()
    ring.close()
    return 0 if ok else 1


# --- the parent: a producer/consumer pair kept alive across segments ---------------------------
_ring_counter = itertools.count()


class Pair:
    """One implementation's producer and consumer processes over their own ring, driven one
    segment at a time (``--stdin``), so that the segments of hugering and C can alternate
    every ~0.1 s and share the noise of the machine.  Between segments both sleep on a read."""

    def __init__(self, impl: str, opts, ref_exe: Path):
        from shm.ring import Ring

        self.impl, self.o = impl, opts
        self.name = f"bench{os.getpid()}-{next(_ring_counter)}"
        # a long consumer timeout: a vCPU stolen for a while must not get the consumer evicted
        self.ring = Ring.create(self.name, slots=opts.slots, slot_size=max(64, opts.payload),
                                full_policy="wait", hugetlbfs=opts.hugetlbfs, shm=opts.shm,
                                max_consumers=4, consumer_timeout=30.0)
        o = opts
        if impl == "c":
            path = self.ring.backing.path
            prod = [ref_exe, "produce", path, 0, o.burst, "--payload", o.payload,
                    "--gap-ns", o.gap_ns, "--stdin"]
            cons = [ref_exe, "consume", path, 0, o.burst, "--stdin"]
        else:
            common = ["--ring", self.name, "--messages", 0, "--burst", o.burst,
                      "--payload", o.payload, "--gap-ns", o.gap_ns, "--stdin"]
            prod = [sys.executable, __file__, "--role", "producer", *common]
            cons = [sys.executable, __file__, "--role", "consumer", *common]
        self.cons = self.prod = None
        try:
            self.cons = BC.Server(f"{impl} consumer", cons, cpu=o.cpus[-1])
            self.prod = BC.Server(f"{impl} producer", prod, cpu=o.cpus[0])
        except BaseException:
            self.close()
            raise

    def segment(self, kind: str, n: int, samples: str | None = None) -> dict:
        """Run one segment of n messages; check count, stamps and payload checksum."""
        timeout = 120 + n / 1e6 + (n * self.o.gap_ns / 1e9 if kind == "lat" else 0)
        self.cons.send(f"{kind} {n} {samples or ''}")
        armed = self.cons.recv(timeout=120)
        if armed != "armed":
            raise BC.BenchError(f"{self.impl} consumer answered {armed!r}, expected 'armed'")
        self.prod.send(f"{kind} {n}")
        rp = self.prod.recv_json(timeout)
        rc = self.cons.recv_json(timeout)
        if rc["messages"] != n or rp["messages"] != n:
            raise BC.BenchError(f"{self.impl}: {rc['messages']} of {n} messages received")
        if rc["bad_seq"]:
            raise BC.BenchError(f"{self.impl}: {rc['bad_seq']} slots had a wrong sequence stamp")
        want = expected_checksum(n, self.o.payload, rc["first_seq"])
        if rc["checksum"] != want:
            raise BC.BenchError(f"{self.impl}: payload checksum {rc['checksum']} != {want}")
        return rc

    def close(self) -> None:
        from shm.ring import Ring

        for s in (self.prod, self.cons):
            if s is not None:
                s.close()
        self.ring.close()
        try:
            Ring.remove(self.name, self.o.hugetlbfs)
        except Exception:
            pass


def run_repeat(pairs: dict, opts, rep: int, tmpdir: str) -> dict:
    """One repeat: ``segments`` throughput segments per implementation, alternating (and
    alternating which goes first), then the same for latency.  Returns, per implementation,
    Mpps over the repeat (messages / time, summed over its segments), the percentiles of each
    latency segment and the repeat's latency samples (the first ``latency_warmup`` of each
    segment dropped)."""
    impls = list(pairs)
    out = {impl: {"messages": 0, "elapsed_ns": 0, "segments_mpps": [],
                  "latency": []} for impl in impls}
    seg_n = max(1, opts.messages // opts.segments)
    for s in range(opts.segments):
        for impl in (impls if (s + rep) % 2 == 0 else impls[::-1]):
            r = pairs[impl].segment("tp", seg_n)
            o = out[impl]
            o["messages"] += r["messages"]
            o["elapsed_ns"] += r["elapsed_ns"]
            o["segments_mpps"].append(r["messages"] / r["elapsed_ns"] * 1e3)
    if not opts.no_latency:
        lat_n = max(1, opts.latency_messages // opts.segments)
        for s in range(opts.segments):
            for impl in (impls if (s + rep) % 2 == 0 else impls[::-1]):
                path = os.path.join(tmpdir, f"{impl}-{rep}-{s}.lat")
                pairs[impl].segment("lat", lat_n + opts.latency_warmup, path)
                lat = np.fromfile(path, dtype=np.int64)
                os.unlink(path)
                out[impl]["latency"].append(lat[opts.latency_warmup:])
    res = {}
    for impl in impls:
        o = out[impl]
        res[impl] = {"mpps": o["messages"] / o["elapsed_ns"] * 1e3,
                     "segments_mpps": o["segments_mpps"]}
        if o["latency"]:
            res[impl]["latency_segments"] = [BC.percentiles(x) for x in o["latency"]]
            res[impl]["latency_samples"] = np.concatenate(o["latency"])
    return res


# --- multiprocessing.Queue peer ---------------------------------------------------------------
def _mpq_producer(q, ready, n, payload, cpu):
    BC.pin(cpu)
    msg = bytes(payload)
    ready.wait()
    for _ in range(n):
        q.put(msg)


def _mpq_consumer(q, ready, result, n, cpu):
    BC.pin(cpu)
    ready.set()
    m = q.get()
    t0 = time.monotonic_ns()
    total = len(m)
    for _ in range(n - 1):
        total += len(q.get())
    t1 = time.monotonic_ns()
    result.put((n, t1 - t0, total))


def run_mpqueue(opts) -> dict:
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    q, result, ready = ctx.Queue(), ctx.Queue(), ctx.Event()
    n = opts.mpqueue_messages
    cons = ctx.Process(target=_mpq_consumer, args=(q, ready, result, n, opts.cpus[-1]))
    prod = ctx.Process(target=_mpq_producer, args=(q, ready, n, opts.payload, opts.cpus[0]))
    cons.start()
    prod.start()
    try:
        got, elapsed, total = result.get(timeout=120 + n / 1e4)
    finally:
        prod.join(10)
        cons.join(10)
        for p in (prod, cons):
            if p.is_alive():
                p.kill()
    if total != n * opts.payload:
        raise BC.BenchError(f"multiprocessing.Queue: {total} bytes received")
    # time from the first get to the last: n - 1 messages moved
    return {"mpps": (got - 1) / elapsed * 1e3}


# --- warm-up and report -------------------------------------------------------------------------
def warm_jit(opts) -> float:
    """Compile every loop for the exact array types the children use (writable slots for the
    producer, read-only for the consumer) into Numba's on-disk cache, so each child only loads
    it.  Returns seconds spent."""
    from shm.ring import Ring

    t = time.monotonic()
    name = f"bench{os.getpid()}-warm"
    ring = Ring.create(name, slots=64, slot_size=max(64, opts.payload), full_policy="wait",
                       hugetlbfs=opts.hugetlbfs, shm=opts.shm)
    try:
        ro = Ring.open(name, opts.hugetlbfs)
        try:
            ps = np.zeros(PSTATE_WORDS, dtype=np.int64)
            cs = np.zeros(CSTATE_WORDS, dtype=np.int64)
            lat = np.zeros(1, dtype=np.int64)
            produce(ring.ctrl, ring.words, ps, 0, opts.burst, 8, 64)
            produce_latency(ring.ctrl, ring.words, ps, 0, 8, 64, 1000)
            consume(ro.ctrl, ro.words, cs, 0, opts.burst)
            consume_latency(ro.ctrl, ro.words, cs, 0, opts.burst, lat)
        finally:
            ro.close()
    finally:
        ring.close()
        Ring.remove(name, opts.hugetlbfs)
    return time.monotonic() - t


def _median_pct(segments: list, key: str) -> float:
    return float(np.median([seg[key] for seg in segments]))


def table(res: dict) -> str:
    m = res["machine"]
    lines = [f"ring benchmark: 1 producer (CPU {res['cpus'][0]}) -> 1 consumer (CPU "
             f"{res['cpus'][-1]}), {res['payload']} B payload, burst {res['burst']}, "
             f"{res['slots']} slots; medians of {res['repeats']} repeats, each "
             f"{res['segments']} alternating segments per implementation",
             f"machine: {m['nproc']} x {m['model_name']}, clocksource {m['clocksource']}"
             f"{', virtualized' if m.get('virtualized') else ''}"
             f"{', isolated CPUs ' + m['isolated_cpus'] if m.get('isolated_cpus') else ''}",
             ""]
    r = res["runs"]
    rows = [
        ["hugering (Numba)", res["hugering_mpps"], r["hugering_mpps"]["min"],
         r["hugering_mpps"]["max"], f"{res['messages']:,}"],
        ["C (gcc -O2, same protocol)", res["c_mpps"], r["c_mpps"]["min"], r["c_mpps"]["max"],
         f"{res['messages']:,}"],
        ["multiprocessing.Queue", res["mpqueue_mpps"], r["mpqueue_mpps"]["min"],
         r["mpqueue_mpps"]["max"], f"{res['mpqueue_messages']:,}"],
    ]
    lines.append(BC.format_table(["throughput", "Mpps", "min", "max", "messages/repeat"], rows))
    lines.append("")
    lines.append(f"hugering / C = {res['ratio_vs_c']:.3f} (target >= 0.9; median of paired "
                 f"segments {res['ratio_vs_c_paired']:.3f});  hugering / "
                 f"multiprocessing.Queue = {res['ratio_vs_mpqueue']:.0f} x (target >= 50)")
    lat = res["latency_ns"]
    if lat:
        lines.append("")
        rows = [[impl] + [lat[impl][k] for k, _ in BC.LATENCY_PERCENTILES]
                for impl in ("hugering", "c")]
        rows.append(["hugering / C"] + [res["latency_ratio_vs_c"][k]
                                        for k, _ in BC.LATENCY_PERCENTILES])
        rows += [[f"{impl}, all samples pooled"] + [res["latency_ns_pooled"][impl][k]
                                                    for k, _ in BC.LATENCY_PERCENTILES]
                 for impl in ("hugering", "c")]
        lines.append(BC.format_table(
            [f"one-way latency, ns: median over {res['segments'] * res['repeats']} segments "
             f"({res['latency_messages'] // res['segments']:,} msgs each, one per "
             f"{res['latency_gap_ns']} ns)", "p50", "p99", "p99.9", "p99.99"], rows))
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    BC.add_common_args(ap, default_repeats=5, quick_repeats=1)
    ap.add_argument("--messages", type=int, help="throughput messages per repeat and "
                    f"implementation (default {DEFAULTS['messages']:,})")
    ap.add_argument("--segments", type=int, help="alternating segments a repeat is split into "
                    f"(default {DEFAULTS['segments']})")
    ap.add_argument("--latency-messages", type=int, help="latency samples per repeat and "
                    f"implementation (default {DEFAULTS['latency_messages']:,})")
    ap.add_argument("--mpqueue-messages", type=int, help="messages per multiprocessing.Queue "
                    f"repeat (default {DEFAULTS['mpqueue_messages']:,})")
    ap.add_argument("--burst", type=int, default=DEFAULTS["burst"],
                    help=f"messages per reserve/peek (default {DEFAULTS['burst']})")
    ap.add_argument("--payload", type=int, default=DEFAULTS["payload"],
                    help="payload bytes per message, a multiple of 8 (default 64)")
    ap.add_argument("--slots", type=int, default=DEFAULTS["slots"],
                    help=f"ring capacity, a power of two (default {DEFAULTS['slots']})")
    ap.add_argument("--gap-ns", type=int, default=DEFAULTS["gap_ns"],
                    help="latency: one message every this many ns (default 2000)")
    ap.add_argument("--no-latency", action="store_true", help="skip the latency segments")
    ap.add_argument("--hugetlbfs", default=None, help="hugetlbfs mount (default: automatic)")
    ap.add_argument("--shm", action="store_true", help="POSIX shared memory instead")
    # child roles (the benchmark starts itself with these)
    ap.add_argument("--role", choices=["producer", "consumer"], help=argparse.SUPPRESS)
    ap.add_argument("--ring", help=argparse.SUPPRESS)
    ap.add_argument("--latency", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--samples", help=argparse.SUPPRESS)
    ap.add_argument("--stdin", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.role:
        return role_producer(args) if args.role == "producer" else role_consumer(args)

    size = QUICK if args.quick else {}
    for key in ("messages", "segments", "latency_messages", "mpqueue_messages"):
        if getattr(args, key) is None:
            setattr(args, key, size.get(key, DEFAULTS[key]))
    args.latency_warmup = size.get("latency_warmup", DEFAULTS["latency_warmup"])
    if args.repeats is not None and args.repeats < 1 or args.segments < 1:
        ap.error("--repeats and --segments must be >= 1")
    repeats = BC.repeats(args)
    if args.messages < args.segments or args.latency_messages < args.segments:
        ap.error("--messages and --latency-messages must be >= --segments")
    if args.mpqueue_messages < 2:
        ap.error("--mpqueue-messages must be >= 2")
    if args.payload % 8 or not 8 <= args.payload <= 9216:
        ap.error("--payload must be a multiple of 8 from 8 to 9216")
    if args.slots < 2 or args.slots & (args.slots - 1):
        ap.error("--slots must be a power of two")
    if not 1 <= args.burst <= args.slots:
        ap.error("--burst must be 1..slots")
    BC.check_cpus(args.cpus)
    if len(args.cpus) < 2:
        BC.progress("warning: one CPU given: producer and consumer share it")

    BC.progress("compiling the C reference and warming the Numba cache ...")
    ref = BC.compile_c(REF_SOURCE, name="ring_ref")
    BC.progress(f"  {ref.relative_to(BC.ROOT)}; Numba loops ready in {warm_jit(args):.1f} s")

    per = {"hugering": [], "c": [], "mpqueue": []}
    pairs = {}
    with tempfile.TemporaryDirectory(prefix="bench_ring.") as tmp:
        try:
            for impl in ("hugering", "c"):
                pairs[impl] = Pair(impl, args, ref)
            for impl, pair in pairs.items():            # warm-up segments, not recorded
                pair.segment("tp", min(args.messages, 1_000_000) // args.segments + 1)
                if not args.no_latency:
                    pair.segment("lat", args.latency_warmup + 1,
                                 os.path.join(tmp, f"warm-{impl}.lat"))
            for rep in range(repeats):
                res = run_repeat(pairs, args, rep, tmp)
                for impl in pairs:
                    per[impl].append(res[impl])
                per["mpqueue"].append(run_mpqueue(args)["mpps"])
                BC.progress(f"  repeat {rep + 1}/{repeats}: hugering {res['hugering']['mpps']:.2f}"
                            f" Mpps, C {res['c']['mpps']:.2f} Mpps, multiprocessing.Queue "
                            f"{per['mpqueue'][-1]:.3f} Mpps"
                            + ("; median p50 latency hugering "
                               f"{_median_pct(res['hugering']['latency_segments'], 'p50'):.0f}"
                               f" ns, C {_median_pct(res['c']['latency_segments'], 'p50'):.0f} ns"
                               if not args.no_latency else ""))
        finally:
            for pair in pairs.values():
                pair.close()

    runs = {"hugering_mpps": BC.summarize(r["mpps"] for r in per["hugering"]),
            "c_mpps": BC.summarize(r["mpps"] for r in per["c"]),
            "mpqueue_mpps": BC.summarize(per["mpqueue"])}
    hug, c, mpq = (runs[k]["median"] for k in ("hugering_mpps", "c_mpps", "mpqueue_mpps"))
    paired = [h / x for rh, rc in zip(per["hugering"], per["c"])
              for h, x in zip(rh["segments_mpps"], rc["segments_mpps"])]
    runs["ratio_vs_c_per_repeat"] = [rh["mpps"] / rc["mpps"]
                                     for rh, rc in zip(per["hugering"], per["c"])]
    latency, lat_ratio, pooled = {}, {}, {}
    if not args.no_latency:
        for impl in ("hugering", "c"):
            segs = [seg for r in per[impl] for seg in r["latency_segments"]]
            latency[impl] = {k: _median_pct(segs, k) for k, _ in BC.LATENCY_PERCENTILES}
            pooled[impl] = BC.percentiles(np.concatenate([r["latency_samples"]
                                                          for r in per[impl]]))
            runs[f"latency_ns_segments_{impl}"] = segs
        lat_ratio = {k: latency["hugering"][k] / latency["c"][k]
                     for k, _ in BC.LATENCY_PERCENTILES}
    result = {
        "benchmark": "ring",
        "hugering_mpps": hug,
        "c_mpps": c,
        "ratio_vs_c": hug / c,
        "ratio_vs_c_paired": float(np.median(paired)),
        "mpqueue_mpps": mpq,
        "ratio_vs_mpqueue": hug / mpq,
        "latency_ns": latency,
        "latency_ratio_vs_c": lat_ratio,
        "latency_ns_pooled": pooled,
        "repeats": repeats,
        "segments": args.segments,
        "messages": args.messages,
        "latency_messages": args.latency_messages if not args.no_latency else 0,
        "latency_gap_ns": args.gap_ns,
        "mpqueue_messages": args.mpqueue_messages,
        "burst": args.burst,
        "payload": args.payload,
        "slots": args.slots,
        "cpus": args.cpus[:2],
        "quick": bool(args.quick),
        "machine": BC.machine_info(),
        "runs": runs,
    }
    BC.emit(result, args.json, table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
