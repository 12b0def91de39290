"""``hugering demo``: one synthetic producer and two consumer processes on a fresh hugepage ring,
live rates once a second, then a summary table; exits by itself (status 0 when every consumer
received every frame, in order).

What it shows: a ring on hugetlbfs (or POSIX shared memory, with the backing's warning), a
producer writing real Ethernet/IPv4/UDP frames into the slots from an ``@njit`` loop, and two
consumer processes (multiprocessing, start method 'spawn': a clean interpreter, no forked Numba
or lock state) that busy-poll the same slots in place from their own ``@njit`` loops
(``peek``/``release``), check every frame's IPv4 and UDP checksums and verify the producer's
sequence numbers (gaps and out-of-order must be 0: the ring is lossless).  The parent process
compiles nothing and touches no slot: it watches the ring's shared counters, as ``hugering
stat`` will, and always removes the ring, on Ctrl-C or error too.

Choices for a small machine (this one has 2 cores for 3 busy processes):

* The producer is *paced* (2 Mpps by default) on a *lossless + wait* ring.  Flat out, all
  three processes would be 100% busy and the figures would mostly measure how the scheduler
  time-slices them; paced, the consumers have idle time, which shows the steady state a
  strategy process lives in (a lag small against the ring, zero loss) and leaves the CPU to whoever
  needs it.  *wait* rather than *drop*: should a consumer be descheduled for longer than the
  ring holds (65536 slots = 33 ms at 2 Mpps), the producer waits instead of dropping, so any
  sequence error the consumers report is a ring bug, never an overload.  ``--rate 0`` runs
  flat out (then the producer is throttled by the slower consumer).
* Consumers idle with *spin, then yield, then sleep*: the ``@njit`` loop hands back to Python
  after ``SPIN_POLLS`` empty polls (a few microseconds), which calls ``os.sched_yield`` (also
  after a busy round: at a steady 2 Mpps a consumer is never idle for long, and without a
  yield it would keep its core for a whole scheduler slice, milliseconds, while the other
  consumer pinned there waits), and after ``YIELDS`` idle rounds in a row sleeps, for
  ``IDLE_SLEEP`` growing to ``IDLE_SLEEP_MAX``; it then catches up in one large burst (the
  ring is the buffer).  So two consumers sharing a core never starve each other.
* Pinning: the producer gets the last allowed CPU, consumers the others in turn (both share
  one on 2 cores); with a single CPU nothing is pinned.
"""
from __future__ import annotations

import json
import logging
import multiprocessing as mp
import os
import queue
import secrets
import signal
import sys
import time

import numpy as np
from numba import njit

from shm import kernels as K
from shm import layout as L
from shm.backing import RingError
from shm.clock import now_ns
from shm.ring import Ring

from .producers.synthetic import _fold

log = logging.getLogger("hugering")

DEFAULT_DURATION = 10.0
DEFAULT_RATE = 2e6
DEFAULT_SLOTS = 65536
BURST = 64                 # consumer peek burst
SPIN_POLLS = 256           # empty polls (a few us) before the consumer loop hands back to Python
YIELDS = 16                # idle rounds that only sched_yield before sleeping
IDLE_SLEEP = 50e-6         # first sleep; grows linearly to IDLE_SLEEP_MAX
IDLE_SLEEP_MAX = 500e-6
CHUNK_NS = 50_000_000      # a busy consumer still hands back to Python this often (stop flag)
READY_TIMEOUT = 90.0       # seconds for the children to start and compile (a cold Numba cache)
DRAIN_TIMEOUT = 5.0        # seconds for the consumers to catch up after the producer stops

# consumer statistics, one int64 array per consumer shared with the parent (a RawArray)
D_FRAMES = 0       # frames taken from the ring
D_BYTES = 1        # bytes of well-formed frames
D_GAPS = 2         # sequence numbers missing (summed over producers)
D_OOO = 3          # frames older than one already seen (duplicates or reordered)
D_BAD = 4          # frames that failed the header or checksum checks
D_REJOINS = 5      # evictions noticed (peek/release returned -1)
D_MAXLAG = 6       # most slots seen waiting at a refresh of the producer cursor
D_PRODUCERS = 7    # producers tracked in the sequence table
D_UNTRACKED = 8    # frames from producers beyond the table
D_LINE = 9         # this consumer's line index in the ring
STATS_WORDS = 16
SEQTAB_ROWS = 16   # (producer id, next expected seq, first seq seen) per producer

RET_IDLE, RET_CHUNK = 0, 1


# --- the consumer's hot loop -----------------------------------------------------------------
@njit(cache=True, nogil=True)
def _be(b, off, n):
    v = np.int64(0)
    for i in range(n):
        v = (v << 8) | np.int64(b[off + i])      # widen first: uint8 << 8 stays uint8
    return v


@njit(cache=True, nogil=True)
def _sum16(words, w0, start, stop):
    """Unfolded one's-complement sum of the bytes ``[start, stop)`` (``start`` even) of the
    region that begins at int64 word ``w0``, read 8 bytes at a time.  The loads are
    little-endian, so each 16-bit lane holds a big-endian word byte-swapped; the one's-
    complement sum commutes with that swap (RFC 1071), and the caller swaps the folded
    result back.  An odd last byte is padded with zero, as the checksum wants."""
    first = start >> 3
    last = (stop - 1) >> 3
    s = np.int64(0)
    for w in range(first, last + 1):
        x = words[w0 + w]
        if w == first and start & 7:
            x &= ~((np.int64(1) << (8 * (start & 7))) - 1)   # drop bytes before start
        if w == last and stop & 7:
            x &= (np.int64(1) << (8 * (stop & 7))) - 1       # drop bytes from stop on
        s += (x & 0xFFFF) + ((x >> 16) & 0xFFFF) + ((x >> 32) & 0xFFFF) + ((x >> 48) & 0xFFFF)
    return s


@njit(cache=True, nogil=True)
def _swap16(v):
    return ((v & 0xFF) << 8) | (v >> 8)


@njit(cache=True, nogil=True)
def check_frame(b, words, w0, cap, verify_udp):
    """Parse an Ethernet/IPv4/UDP frame of ``cap`` captured bytes that starts at int64 word
    ``w0`` (``b`` and ``words`` are byte and word views of the same memory); returns
    (ok, producer id, seq).  Every read is inside ``cap`` (word reads inside the 8-byte
    rounding of it, which a slot always holds); both checksums are verified."""
    off = w0 * 8
    if cap < 14 + 20 + 8 + 16:
        return False, 0, 0
    if b[off + 12] != 0x08 or b[off + 13] != 0x00:
        return False, 0, 0
    ip = off + 14
    vihl = np.int64(b[ip])
    ihl = (vihl & 0xF) * 4
    if vihl >> 4 != 4 or ihl < 20 or b[ip + 9] != 17:
        return False, 0, 0
    total = _be(b, ip + 2, 2)
    if total < ihl + 8 + 16 or 14 + total > cap:
        return False, 0, 0
    if _fold(_sum16(words, w0, 14, 14 + ihl)) != 0xFFFF:   # 0xffff is its own swap
        return False, 0, 0
    u = ip + ihl
    ulen = _be(b, u + 4, 2)
    if ulen != total - ihl:
        return False, 0, 0
    if verify_udp and _be(b, u + 6, 2) != 0:
        # pseudo-header (the addresses at 26..34, protocol, UDP length) + the UDP segment
        s = _sum16(words, w0, 26, 34) + _sum16(words, w0, 14 + ihl, 14 + total)
        if _fold(_swap16(_fold(s)) + 17 + ulen) != 0xFFFF:
            return False, 0, 0
    return True, _be(b, u + 8, 8), _be(b, u + 16, 8)


@njit(cache=True, nogil=True)
def track_seq(seqtab, stats, pid, seq):
    """Per producer id: count missing sequence numbers (gaps) and frames older than expected."""
    n = stats[D_PRODUCERS]
    for r in range(n):
        if seqtab[r, 0] == pid:
            expected = seqtab[r, 1]
            if seq == expected:
                seqtab[r, 1] = seq + 1
            elif seq > expected:
                stats[D_GAPS] += seq - expected
                seqtab[r, 1] = seq + 1
            else:
                stats[D_OOO] += 1
            return
    if n < seqtab.shape[0]:
        seqtab[n, 0] = pid
        seqtab[n, 1] = seq + 1
        seqtab[n, 2] = seq
        stats[D_PRODUCERS] = n + 1
    else:
        stats[D_UNTRACKED] += 1


@njit(cache=True, nogil=True)
def consume(ctrl, words, slot_bytes, cstate, stats, seqtab, burst, spin_polls, chunk_ns,
            verify_udp):
    """Busy-poll the ring, checking every frame in place, until ``spin_polls`` polls in a row
    find nothing (RET_IDLE) or ``chunk_ns`` passes (RET_CHUNK).  No allocation, no system
    call; a clock read every 256 polls (and the ring's heartbeats)."""
    stride_w = cstate[K.CS_STRIDE_W]
    size = cstate[K.CS_SLOT_SIZE]
    end = now_ns() + chunk_ns
    empty = 0
    polls = 0
    while True:
        polls += 1
        if (polls & 255) == 0 and now_ns() >= end:
            return RET_CHUNK
        k = K.peek(ctrl, cstate, burst)
        if k < 0:
            # slow path: the producer evicted us (we held it back too long); join again at its
            # cursor; the frames missed show up as gaps
            K.rejoin(ctrl, cstate, now_ns())
            stats[D_REJOINS] += 1
            continue
        if k == 0:
            empty += 1
            if empty >= spin_polls:
                return RET_IDLE
            continue
        empty = 0
        lag = cstate[K.CS_CACHED_HEAD] - cstate[K.CS_CURSOR]
        if lag > stats[D_MAXLAG]:
            stats[D_MAXLAG] = lag
        for j in range(k):
            base = K.consumer_slot(cstate, j) * stride_w
            cap = (words[base + L.S_LENS] >> 32) & 0xFFFFFFFF
            if cap > size:                         # never trust a length field
                cap = size
            ok, pid, seq = check_frame(slot_bytes, words, base + L.S_PAYLOAD, cap, verify_udp)
            if not ok:
                stats[D_BAD] += 1
                continue
            stats[D_BYTES] += cap
            track_seq(seqtab, stats, pid, seq)
        stats[D_FRAMES] += k
        if K.release(ctrl, cstate, k) < 0:
            # evicted while reading: this burst may have been overwritten under us (it was
            # checked and counted all the same; an eviction is a loss the summary shows)
            K.rejoin(ctrl, cstate, now_ns())
            stats[D_REJOINS] += 1


# --- child processes -------------------------------------------------------------------------
def _child_setup() -> None:
    """Ctrl-C belongs to the parent (it stops us through the stop event)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from engine.cli import setup_logging
    setup_logging()


def _pin(cpu) -> str:
    """Pin to ``cpu`` (after the warm-up: compiling is better spread over every core)."""
    if cpu is None:
        return "-"
    try:
        os.sched_setaffinity(0, {cpu})
        return str(cpu)
    except OSError as e:
        log.warning("could not pin pid %d to cpu %d: %s", os.getpid(), cpu, e.strerror)
        return "-"


def _consumer_main(name, where, index, cpu, stats_raw, stop, events, ppid, verify_udp):
    role = f"consumer {index}"
    _child_setup()
    try:
        t = time.perf_counter()
        ring = Ring.open(name, where)
        c = ring.consumer()
        stats = np.frombuffer(stats_raw, dtype=np.int64)
        stats[D_LINE] = c.index
        seqtab = np.zeros((SEQTAB_ROWS, 3), dtype=np.int64)
        args = (ring.ctrl, ring.words, ring.slot_bytes, c.cstate, stats, seqtab)
        consume(*args, BURST, 1, 0, verify_udp)    # warm-up: nothing is published yet
        warm = time.perf_counter() - t
        events.put(("ready", role, {"pid": os.getpid(), "cpu": _pin(cpu), "warmup_s": warm}))
        idle = rounds = 0
        cpu0, wall0 = time.process_time(), time.monotonic()
        while True:
            before = stats[D_FRAMES]
            consume(*args, BURST, SPIN_POLLS, CHUNK_NS, verify_udp)
            if stats[D_FRAMES] != before:
                idle = 0
                os.sched_yield()      # drained a burst: let a consumer sharing this core in
            else:
                idle += 1
                if idle <= YIELDS:
                    os.sched_yield()
                else:
                    time.sleep(min(IDLE_SLEEP_MAX, IDLE_SLEEP * (idle - YIELDS)))
            rounds += 1
            if rounds % 64 == 0 or idle > YIELDS:  # (a semaphore and a system call: not often)
                if stop.is_set() or os.getppid() != ppid:   # stopped, or orphaned
                    break
        c.close()
        first = int(seqtab[0, 2]) if stats[D_PRODUCERS] else None
        events.put(("done", role, {"first_seq": first,
                                   "cpu_share": (time.process_time() - cpu0)
                                   / max(time.monotonic() - wall0, 1e-9)}))
        ring.close()
    except RingError as e:
        events.put(("error", role, str(e)))
        sys.exit(1)
    except BaseException as e:
        events.put(("error", role, f"{type(e).__name__}: {e}"))
        raise


def _producer_main(name, where, cpu, rate, sizes, duration, seed, go, stop, events, ppid):
    from engine.producers.synthetic import SyntheticProducer
    role = "producer"
    _child_setup()
    try:
        ring = Ring.open(name, where, writable_slots=True)
        with SyntheticProducer(ring, rate=rate, sizes=sizes, seed=seed) as sp:
            warm = sp.warmup()
            events.put(("ready", role, {"pid": os.getpid(), "cpu": _pin(cpu), "warmup_s": warm}))
            while not go.wait(0.5):
                if stop.is_set() or os.getppid() != ppid:
                    return
            cpu0 = time.process_time()
            stats = sp.run(duration=duration,
                           stop=lambda: stop.is_set() or os.getppid() != ppid)
            stats["cpu_share"] = (time.process_time() - cpu0) / max(stats["elapsed_s"], 1e-9)
        events.put(("done", role, stats))
        ring.close()
    except RingError as e:
        events.put(("error", role, str(e)))
        sys.exit(1)
    except BaseException as e:
        events.put(("error", role, f"{type(e).__name__}: {e}"))
        raise


# --- the parent ------------------------------------------------------------------------------
class DemoError(Exception):
    pass


def _plan_cpus(consumers: int):
    """(producer cpu, [consumer cpus]); None where nothing is pinned."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = []
    if len(cpus) < 2:
        return None, [None] * consumers
    rest = cpus[:-1]
    return cpus[-1], [rest[i % len(rest)] for i in range(consumers)]


class _Live:
    """Once a second: published rate, per-consumer rate, lag and errors, from shared memory.
    In place on a terminal, one line per second otherwise."""

    def __init__(self, ring: Ring, stats: list, out, quiet: bool):
        self.ring, self.stats, self.out, self.quiet = ring, stats, out, quiet
        self.tty = hasattr(out, "isatty") and out.isatty()
        self.t0 = time.monotonic()
        self.last = (self.t0, self._sample())
        self.max_lag = [0] * len(stats)
        self.printed = False

    def _sample(self):
        ctrl = self.ring.ctrl
        head = int(ctrl[L.P_CURSOR])
        out = [int(ctrl[L.PS_PUBLISHED]), int(ctrl[L.PS_DROPPED_FULL])]
        for st in self.stats:
            line = self.ring.consumer_lines[int(st[D_LINE])]
            out.append((int(line["delivered"]), head - int(line["cursor"]),
                        int(st[D_GAPS] + st[D_OOO] + st[D_BAD])))
        return out

    def tick(self, show: bool = True) -> None:
        now = time.monotonic()
        cur = self._sample()
        t_prev, prev = self.last
        dt = max(now - t_prev, 1e-9)
        self.last = (now, cur)
        rows = [("producer", f"{(cur[0] - prev[0]) / dt / 1e6:6.3f} Mpps published",
                 f"drops {cur[1]:,}")]
        for i, (c, p) in enumerate(zip(cur[2:], prev[2:])):
            self.max_lag[i] = max(self.max_lag[i], c[1])
            rows.append((f"consumer {i}", f"{(c[0] - p[0]) / dt / 1e6:6.3f} Mpps received",
                         f"lag {c[1]:>6,}  errors {c[2]:,}"))
        if self.quiet or not show:
            return
        t = f"{now - self.t0:5.1f} s"
        if self.tty:
            # a block of short lines redrawn in place (one long line would wrap on a narrow
            # terminal and break the redraw): cursor up over the previous block, clear, write
            up = f"\x1b[{len(rows)}F" if self.printed else ""
            self.out.write(up + "".join(
                f"\x1b[K{t if k == 0 else '':>7}  {a:<10}  {b}  {c}\n"
                for k, (a, b, c) in enumerate(rows)))
        else:
            # a log: one line per second
            self.out.write(f"{t}  " + "  |  ".join(f"{a} {b} {c}" for a, b, c in rows) + "\n")
        self.out.flush()
        self.printed = True


def run_demo(duration: float = DEFAULT_DURATION, rate: float = DEFAULT_RATE, consumers: int = 2,
             slots: int = DEFAULT_SLOTS, sizes=(64, 128), hugetlbfs: str | None = None,
             shm: bool = False, json_out: bool = False, out=None, seed: int = 0) -> int:
    """Run the demonstration; returns the exit status (0: every frame arrived, in order)."""
    out = out or sys.stdout
    name = f"demo-{os.getpid()}-{secrets.token_hex(2)}"
    # the smallest slot that holds the largest frame without wasting the stride's padding
    slot_size = max(L.MIN_SLOT_SIZE, L.round_up(L.SLOT_HEADER_BYTES + sizes[1], L.LINE)
                    - L.SLOT_HEADER_BYTES)
    ring = Ring.create(name, slots=slots, slot_size=slot_size, mode="lossless",
                       full_policy="wait", hugetlbfs=hugetlbfs, shm=shm, consumer_timeout=2.0,
                       max_consumers=max(4, consumers))
    procs: list = []
    stop = None
    old_term = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        where = (os.path.dirname(ring.backing.path)
                 if ring.backing.kind == L.BACKING_HUGETLBFS else None)
        ctx = mp.get_context("spawn")
        go, stop, events = ctx.Event(), ctx.Event(), ctx.Queue()
        ppid = os.getpid()
        pcpu, ccpus = _plan_cpus(consumers)
        raws = [ctx.RawArray("q", STATS_WORDS) for _ in range(consumers)]
        procs.append(("producer", ctx.Process(
            target=_producer_main, name="hugering-demo-producer", daemon=True,
            args=(name, where, pcpu, rate, sizes, duration, seed, go, stop, events, ppid))))
        for i in range(consumers):
            procs.append((f"consumer {i}", ctx.Process(
                target=_consumer_main, name=f"hugering-demo-consumer-{i}", daemon=True,
                args=(name, where, i, ccpus[i], raws[i], stop, events, ppid, True))))
        # The producer and the first consumer start (and compile, on a cold Numba cache) side
        # by side; the other consumers start once the first is ready and load its machine code
        # from the cache: two compilations on two cores instead of three.
        _start(procs[:2])
        ready, done, t_ready = {}, {}, time.monotonic()
        while len(ready) < len(procs):
            _collect(events, procs, ready, done, 0.2)
            if "consumer 0" in ready and procs[-1][1].pid is None:
                _start(procs[2:])
            if time.monotonic() - t_ready > READY_TIMEOUT:
                raise DemoError(f"the processes were not ready after {READY_TIMEOUT:.0f} s")
        ready_s = time.monotonic() - t_ready
        stats = [np.frombuffer(r, dtype=np.int64) for r in raws]
        if not json_out:
            print(_header(ring, rate, duration, sizes, ready, consumers, ready_s), file=out)
            out.flush()
        live = _Live(ring, stats, out, quiet=json_out)
        go.set()
        next_tick = time.monotonic() + 1.0
        while "producer" not in done:
            _collect(events, procs, ready, done, max(0.0, next_tick - time.monotonic()))
            if time.monotonic() >= next_tick:
                live.tick()
                next_tick += 1.0
        # let the consumers drain what is still in the ring, then stop them
        published = int(ring.ctrl[L.PS_PUBLISHED])
        t_drain = time.monotonic()
        while time.monotonic() - t_drain < DRAIN_TIMEOUT:
            if all(int(ring.consumer_lines[int(s[D_LINE])]["delivered"]) >= published
                   for s in stats):
                break
            time.sleep(0.01)
        live.tick(show=False)                      # the lags at the end, for the summary
        stop.set()
        while len(done) < len(procs):
            _collect(events, procs, ready, done, 0.2)
            if time.monotonic() - t_drain > DRAIN_TIMEOUT + 10:
                raise DemoError("the consumers did not stop")
        for _, p in procs:
            p.join(5)
        report = _report(ring, ready, done, stats, live.max_lag, rate, duration, sizes)
        if json_out:
            print(json.dumps(report, indent=2), file=out)
        else:
            print(_summary(report), file=out)
        if not report["ok"]:
            log.error("demo: %d sequence errors, %d bad frames, %d frames missing: the ring "
                      "lost, reordered or tore frames", report["sequence_errors"],
                      report["bad_frames"], report["missing"])
            return 1
        return 0
    except DemoError as e:
        raise RingError(f"demo: {e}") from None
    finally:
        signal.signal(signal.SIGTERM, old_term)
        if stop is not None:
            stop.set()
        for _, p in procs:
            if p.pid is not None:
                p.join(2)
                if p.is_alive():
                    p.terminate()
                    p.join(2)
        ring.close()
        try:
            Ring.remove(name, os.path.dirname(ring.backing.path)
                        if ring.backing.kind == L.BACKING_HUGETLBFS else None)
        except RingError:
            pass


def _start(procs) -> None:
    """Start processes with SIGINT ignored from their first instruction (Python keeps an
    ignored SIGINT at start-up): Ctrl-C is the parent's, and never prints child tracebacks."""
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        for _, p in procs:
            p.start()
    finally:
        signal.signal(signal.SIGINT, old)


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def _collect(events, procs, ready, done, timeout):
    """Take one message (or wait ``timeout``); fail if a child reported an error or died."""
    try:
        kind, role, payload = events.get(timeout=timeout) if timeout > 0 else \
            events.get_nowait()
    except queue.Empty:
        for role, p in procs:
            if p.exitcode is not None and role not in done:
                raise DemoError(f"{role} (pid {p.pid}) exited with status {p.exitcode}")
        return
    if kind == "error":
        raise DemoError(f"{role}: {payload}")
    (ready if kind == "ready" else done)[role] = payload


def _header(ring, rate, duration, sizes, ready, consumers, ready_s) -> str:
    info = ring.info()
    target = "flat out" if not rate else f"{rate / 1e6:g} Mpps"
    warm = max(r["warmup_s"] for r in ready.values())
    return (f"hugering demo: ring {info['name']} on {info['backing']} "
            f"({info['page_size'] >> 10} KiB pages), {info['capacity']} slots x "
            f"{info['slot_size']} B, lossless/wait\n"
            f"producer: synthetic UDP {sizes[0]}..{sizes[1]} B at {target} for {duration:g} s, "
            f"cpu {ready['producer']['cpu']}; {consumers} consumers, cpu "
            f"{', '.join(ready[f'consumer {i}']['cpu'] for i in range(consumers))}\n"
            f"ready in {ready_s:.1f} s (Numba warm-up {warm:.1f} s)")


def _report(ring, ready, done, stats, max_lag, rate, duration, sizes) -> dict:
    info = ring.info()
    prod = done["producer"]
    elapsed = max(prod["elapsed_s"], 1e-9)
    published = info["producer"]["published"]
    consumers, errors, missing, bad = [], 0, 0, 0
    for i, st in enumerate(stats):
        role = f"consumer {i}"
        frames = int(st[D_FRAMES])
        first = done[role].get("first_seq")
        # consumers joined before the first frame: each must see 0 .. published-1, all of it,
        # in order (a frame before the first one seen is missing too)
        miss = max(0, published - frames)
        errors += int(st[D_GAPS] + st[D_OOO]) + (first or 0)
        bad += int(st[D_BAD])
        missing += miss
        consumers.append({
            "index": i, "pid": ready[role]["pid"], "cpu": ready[role]["cpu"],
            "frames": frames, "bytes": int(st[D_BYTES]), "rate_pps": frames / elapsed,
            "gaps": int(st[D_GAPS]), "out_of_order": int(st[D_OOO]), "bad": int(st[D_BAD]),
            "rejoins": int(st[D_REJOINS]), "max_lag": max(int(st[D_MAXLAG]), max_lag[i]),
            "first_seq": first, "missing": miss, "warmup_s": ready[role]["warmup_s"],
            "cpu_share": done[role]["cpu_share"],
        })
    return {
        "ring": info["name"], "backing": info["backing"], "page_size": info["page_size"],
        "capacity": info["capacity"], "slot_size": info["slot_size"],
        "mode": "lossless/wait", "target_pps": rate or None, "duration_s": duration,
        "sizes": list(sizes),
        "producer": {"pid": ready["producer"]["pid"], "cpu": ready["producer"]["cpu"],
                     "frames": prod["frames"], "published": prod["published"],
                     "bytes": prod["bytes"], "rate_pps": prod["rate_pps"],
                     "elapsed_s": prod["elapsed_s"], "dropped": prod["dropped"],
                     "full_waits": prod["full_waits"], "cpu_share": prod["cpu_share"],
                     "warmup_s": ready["producer"]["warmup_s"]},
        "ring_counters": {k: info["producer"][k] for k in
                          ("published", "dropped_full", "full_waits", "evictions")},
        "consumers": consumers,
        "sequence_errors": errors,
        "bad_frames": bad,
        "missing": missing,
        "ok": errors == 0 and bad == 0 and missing == 0,
    }


def _summary(r: dict) -> str:
    from engine.cli import table
    p = r["producer"]
    el = max(p["elapsed_s"], 1e-9)
    rows = [["producer", p["cpu"], f"{p['cpu_share'] * 100:.0f}%", f"{p['published']:,}",
             f"{p['rate_pps'] / 1e6:.3f}", f"{p['bytes'] * 8 / el / 1e9:.2f}", "-", "-", "-",
             "-"]]
    for c in r["consumers"]:
        rows.append([f"consumer {c['index']}", c["cpu"], f"{c['cpu_share'] * 100:.0f}%",
                     f"{c['frames']:,}", f"{c['rate_pps'] / 1e6:.3f}",
                     f"{c['bytes'] * 8 / el / 1e9:.2f}", f"{c['gaps']:,}",
                     f"{c['out_of_order']:,}", f"{c['bad']:,}", f"{c['max_lag']:,}"])
    rc = r["ring_counters"]
    n = len(r["consumers"])
    verdict = (f"OK, every consumer received all {p['published']:,} frames, in order, with "
               f"valid checksums" if r["ok"] else
               f"FAILED ({r['missing']:,} frames missing)")
    target = "flat out" if not r["target_pps"] else f"{r['target_pps'] / 1e6:g} Mpps"
    return "\n".join([
        "",
        f"summary ({p['elapsed_s']:.1f} s, target {target})",
        table(rows, ["process", "cpu", "busy", "frames", "Mpps", "Gbit/s", "gaps",
                     "out-of-order", "bad", "max lag"], right=set(range(1, 10)), indent="  "),
        "  (cpu: the core it is pinned to; busy: its CPU time over the run's wall time)",
        f"ring: published {rc['published']:,}, dropped {rc['dropped_full']:,}, full waits "
        f"{rc['full_waits']:,}, evictions {rc['evictions']:,}",
        f"sequence errors: {r['sequence_errors']} (gaps + out-of-order, over {n} consumers); "
        f"bad frames: {r['bad_frames']}",
        f"result: {verdict}",
    ])
