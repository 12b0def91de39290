"""Write what crosses a ring to a pcap file (``hugering dump``, after ``dpdk-pdump``/``xdpdump``).

tcpdump cannot see a NIC that DPDK or an AF_XDP socket owns; the ring can, so ``dump`` joins it
as one more consumer and writes every frame it sees (or those that pass a pcap-filter
expression) to a classic pcap file with nanosecond timestamps, which ``tcpdump -r``, tshark and
libpcap read.  Each record carries the slot's ``ts_ns`` (the producer's publish time, or the
capture's time for ``hugering replay --original-timestamps``), ``wire_len`` as the original
length and the slot's ``cap_len`` bytes (clamped to the slot size, and to ``snaplen``).

The hot loop ``dump_chunk`` is one ``@njit`` call per ~50 ms: poll a burst, parse and filter it
in place (``parsers.l2l4.parse_slots`` and the program interpreter
``parsers.filters.match_slots``), encode the matching frames as pcap records into a
preallocated buffer, release the burst; Python writes the buffer out between calls (one
``write`` per chunk, so a pipe into ``tcpdump -r -`` sees packets within 50 ms).  The
interpreter rather than ``Filter.specialized``: the specialised matcher is a separate compiled
function per filter, and Numba cannot cache a function that takes another compiled function as
an argument (it recompiles the caller in every process), so using it would mean going back to
Python for every burst; the interpreter compiles once into this loop, and is cached.

Consumer semantics follow the ring's mode:

* *lossless* -- ``dump`` is an ordinary consumer: it reads the slots in place (``peek`` /
  ``release``) and holds the producer back until it has written them, so it must keep up (the
  producer drops and counts, or waits, by its policy).  Slots are released only once encoded;
  frames after ``count`` is reached are left in the ring.  If the producer evicts it (no
  progress for the ring's ``consumer_timeout``, e.g. a blocked output pipe), the frames of the
  burst being read are discarded, not written (they may have been overwritten), and the
  consumer rejoins, counting what it missed in ``lost``.
* *lossy* -- it copies bursts out with ``receive``; falling a ring behind is counted in
  ``lost`` (the ring's lap detection), never written torn.

Idle: a few hundred empty polls, then back to Python, which yields and then sleeps (50 us
growing to 500 us): a dump must not take a core from the producer it watches; the ring is the
buffer while it sleeps.

The consumer always leaves its line, and the file is always flushed and closed, whether the
dump ends by ``count``, ``duration``, ``stop()``, a broken output pipe or Ctrl-C.
"""
from __future__ import annotations

import os
import signal
import sys
import time

import numpy as np
from numba import njit

from parsers.filters import match_slots
from parsers.l2l4 import parse_slots
from shm import kernels as K
from shm import layout as L
from shm.clock import now_ns

# private state words of the dump loop (process-local)
D_CAPTURED = 0       # frames written
D_SEEN = 1           # frames examined
D_FILTERED = 2       # frames the filter rejected
D_BYTES = 3          # frame bytes written (record headers not included)
D_POS = 4            # bytes of pcap records waiting in the output buffer
D_REJOINS = 5        # evictions noticed (lossless): the consumer rejoined
STATE_WORDS = 8

RET_CHUNK, RET_COUNT, RET_DEADLINE, RET_FLUSH, RET_IDLE = 0, 1, 2, 3, 4
PCAP_RECORD_HEADER = 16
MAX_SNAPLEN = 262144     # libpcap's MAXIMUM_SNAPLEN
CHUNK_NS = 50_000_000    # hand back to Python this often (write out, stop(), Ctrl-C)
SPIN_POLLS = 256         # empty polls before handing back to Python to idle
YIELDS = 16              # idle rounds that only sched_yield before sleeping
IDLE_SLEEP = 50e-6       # first sleep; grows linearly to IDLE_SLEEP_MAX
IDLE_SLEEP_MAX = 500e-6
DEFAULT_BURST = 256
OUT_BURSTS = 16          # the output buffer holds this many worst-case bursts


class DumpConfigError(ValueError):
    """A bad dump setting; ``key`` names it."""

    def __init__(self, key: str, message: str):
        super().__init__(f"{key}: {message}")
        self.key = key


class DumpOutputError(OSError):
    """The output file cannot be opened (the message names it)."""


# --- the hot loop -----------------------------------------------------------------------------
@njit(cache=True, nogil=True)
def _put32(out, o, v):
    out[o] = v & 0xFF
    out[o + 1] = (v >> 8) & 0xFF
    out[o + 2] = (v >> 16) & 0xFF
    out[o + 3] = (v >> 24) & 0xFF


@njit(cache=True, nogil=True)
def _emit(srcw, srcb, stride, size, first, k, capacity, recs, verdict, prog, use_filter, parse,
          out, st, want, snaplen):
    """Examine ``k`` slots from ``first`` (a ring when ``capacity`` > 0, else a plain array of
    slot records) and append the matching ones to ``out`` as pcap records (ns timestamps,
    little-endian).  Stops once ``want`` frames are written (``want`` < 0: no limit); returns
    how many slots were examined."""
    if use_filter:
        if parse:
            parse_slots(srcb, stride, size, first, k, capacity, recs)
        match_slots(srcb, stride, size, first, k, capacity, recs, prog, verdict)
    mask = capacity - 1 if capacity > 0 else np.int64(-1)
    sw = stride // 8
    pos = st[D_POS]
    i = 0
    while i < k:
        if want >= 0 and st[D_CAPTURED] >= want:
            break
        st[D_SEEN] += 1
        if use_filter and verdict[i] == 0:
            st[D_FILTERED] += 1
            i += 1
            continue
        s = (first + i) & mask
        base = s * sw
        ts = srcw[base + L.S_TS]
        lens = srcw[base + L.S_LENS]
        wire = lens & 0xFFFFFFFF
        cl = (lens >> 32) & 0xFFFFFFFF
        if cl > size:                               # never trust a producer's length
            cl = size
        if cl > snaplen:
            cl = snaplen
        if wire < cl:                               # pcap: the original is never shorter
            wire = cl
        sec = ts // 1_000_000_000
        _put32(out, pos, sec)
        _put32(out, pos + 4, ts - sec * 1_000_000_000)
        _put32(out, pos + 8, cl)
        _put32(out, pos + 12, wire)
        src = s * stride + L.SLOT_HEADER_BYTES
        dst = pos + PCAP_RECORD_HEADER
        for b in range(cl):
            out[dst + b] = srcb[src + b]
        pos = dst + cl
        st[D_CAPTURED] += 1
        st[D_BYTES] += cl
        i += 1
    st[D_POS] = pos
    return i


@njit(cache=True, nogil=True)
def dump_chunk(ctrl, words, slot_bytes, cstate, lossy, copy_w, copy_rw, copy_rb, recs, verdict,
               prog, use_filter, parse, out, st, want, snaplen, burst, until_ns, chunk_ns,
               spin_polls):
    """Consume the ring for ``chunk_ns`` at most, writing pcap records into ``out`` from
    ``st[D_POS]``; returns RET_* (RET_FLUSH: ``out`` has no room for another burst; RET_IDLE:
    ``spin_polls`` empty polls in a row).  ``want`` frames in all (< 0: no limit), ``until_ns``
    a CLOCK_REALTIME deadline (0: none).  ``lossy`` copies bursts out with ``receive`` into
    ``copy_w`` (read back through ``copy_rw``/``copy_rb``, read-only views of it: then
    ``_emit`` and the parser and matcher it calls compile once, for read-only arrays, which
    the ring's slots are for a consumer); otherwise slots are read in place and released once
    encoded.  The filter ``prog`` (``parsers.filters``) applies when ``use_filter``; ``parse``
    when it reads parsed fields.  Allocates nothing.  This consumer's ``cstate`` only."""
    stride = cstate[K.CS_STRIDE_W] * 8
    size = cstate[K.CS_SLOT_SIZE]
    cap = cstate[K.CS_CAPACITY]
    rec_max = PCAP_RECORD_HEADER + min(size, snaplen)
    now = now_ns()
    end = now + chunk_ns
    empty = 0
    while True:
        if want >= 0 and st[D_CAPTURED] >= want:
            return RET_COUNT
        if until_ns != 0 and now >= until_ns:
            return RET_DEADLINE
        if now >= end:
            return RET_CHUNK
        if out.shape[0] - st[D_POS] < burst * rec_max:
            return RET_FLUSH
        if lossy:
            k = K.receive(ctrl, words, cstate, copy_w, burst)
            if k > 0:
                _emit(copy_rw, copy_rb, stride, size, 0, k, 0, recs, verdict, prog,
                      use_filter, parse, out, st, want, snaplen)
        else:
            k = K.peek(ctrl, cstate, burst)
            if k < 0:                               # evicted: count what we missed, rejoin
                K.rejoin(ctrl, cstate, now)
                st[D_REJOINS] += 1
                now = now_ns()
                continue
            if k > 0:
                pos0 = st[D_POS]
                cap0 = st[D_CAPTURED]
                seen0 = st[D_SEEN]
                filt0 = st[D_FILTERED]
                bytes0 = st[D_BYTES]
                m = _emit(words, slot_bytes, stride, size, cstate[K.CS_CURSOR], k, cap, recs,
                          verdict, prog, use_filter, parse, out, st, want, snaplen)
                if m > 0 and K.release(ctrl, cstate, m) < 0:
                    # evicted while we read: these slots may have been overwritten under us,
                    # so this burst is not written; rejoin counts it in ``lost``
                    st[D_POS] = pos0
                    st[D_CAPTURED] = cap0
                    st[D_SEEN] = seen0
                    st[D_FILTERED] = filt0
                    st[D_BYTES] = bytes0
                    K.rejoin(ctrl, cstate, now)
                    st[D_REJOINS] += 1
        if k == 0:
            empty += 1
            if empty >= spin_polls:
                return RET_IDLE
        else:
            empty = 0
        now = now_ns()


# --- setup and the Python driver ---------------------------------------------------------------
class StopSignals:
    """Within ``with``: SIGINT and SIGTERM set a flag (``stop()`` returns true) instead of
    raising, so that the loop ends at its next check and no write is cut in half; a second
    signal raises ``KeyboardInterrupt`` as usual (a blocked output pipe can still be left).
    ``signum`` is the first signal received.  Outside the main thread it does nothing."""

    def __init__(self):
        self.signum = None
        self._old = {}

    def __call__(self) -> bool:
        return self.signum is not None

    def _handler(self, signum, frame):
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum

    def __enter__(self):
        try:
            for s in (signal.SIGINT, signal.SIGTERM):
                self._old[s] = signal.signal(s, self._handler)
        except ValueError:                          # not the main thread
            pass
        return self

    def __exit__(self, *exc):
        for s, h in self._old.items():
            signal.signal(s, h)
        self._old.clear()


def _open_output(out):
    """(binary file, close it?, label) for a path, '-' (stdout) or a binary file object."""
    if hasattr(out, "write"):
        return out, False, getattr(out, "name", repr(out))
    if out == "-":
        sys.stdout.flush()
        # our own descriptor: raw writes (no Python buffer between us and a pipe), and closing
        # it leaves sys.stdout alone
        return open(os.dup(sys.stdout.fileno()), "wb", buffering=0), True, "stdout"
    path = os.fspath(out)
    try:
        return open(path, "wb", buffering=0), True, path
    except OSError as e:
        raise DumpOutputError(f"cannot write {path}: {e.strerror or e}") from None


def _write_all(f, data) -> None:
    """Write all of ``data``; a Ctrl-C arriving between partial writes is held until the
    record stream is whole again (a pcap cut inside a record is unreadable past that point)."""
    mv = memoryview(data)
    interrupted = False
    while len(mv):
        try:
            n = f.write(mv)
        except KeyboardInterrupt:
            interrupted = True
            continue
        if n is None:                               # a non-blocking descriptor: wait a bit
            time.sleep(0.001)
            continue
        mv = mv[n:]
    if interrupted:
        raise KeyboardInterrupt


def dump(ring_name: str, out, *, hugetlbfs: str | None = None, count: int | None = None,
         filter_expr: str | None = None, duration: float | None = None, stop=None,
         snaplen: int | None = None, ready=None, burst: int = DEFAULT_BURST) -> dict:
    """Join ring ``ring_name`` as a consumer and write the frames it sees to ``out`` (a path,
    ``"-"`` for stdout, or a binary file object) as a classic pcap file; returns the report.

    Stops after ``count`` written frames, ``duration`` seconds, when ``stop()`` returns true
    (checked about every 50 ms), on a broken output pipe, or on Ctrl-C; ``stopped_by`` says
    which.  ``filter_expr`` is a pcap-filter expression (``parsers.pcap_filter``); ``snaplen``
    keeps at most that many bytes of each frame.  ``ready(info)`` is called once the consumer
    has joined (``info``: the ring's ``Ring.info()``).

    Raises ``DumpConfigError`` (a bad setting), ``parsers.filters.FilterSyntaxError`` (a bad
    expression), ``shm.RingError`` (no such ring, no free consumer line) and
    ``DumpOutputError`` (the output cannot be opened), all before joining the ring."""
    from parsers.pcap import LINKTYPE_ETHERNET, pcap_file_header
    from parsers.pcap_filter import compile_pcap_filter
    from parsers.record import new_records
    from shm.ring import Consumer, Ring

    if count is not None and (not isinstance(count, int) or isinstance(count, bool)
                              or count < 0):
        raise DumpConfigError("count", f"expected a number of packets >= 0, got {count!r}")
    if duration is not None and not (isinstance(duration, (int, float)) and 0 <= duration < 1e9):
        raise DumpConfigError("duration", f"expected seconds >= 0, got {duration!r}")
    if snaplen is not None and (not isinstance(snaplen, int) or not 1 <= snaplen <= MAX_SNAPLEN):
        raise DumpConfigError("snaplen", f"expected 1..{MAX_SNAPLEN} bytes, got {snaplen!r}")
    if not isinstance(burst, int) or not 1 <= burst <= 4096:
        raise DumpConfigError("burst", f"expected 1..4096, got {burst!r}")
    flt = compile_pcap_filter(filter_expr) if filter_expr is not None else None
    prog = (flt if flt is not None else compile_pcap_filter("")).prog

    ring = Ring.open(ring_name, hugetlbfs)
    try:
        size = ring.slot_size
        snap = min(size, snaplen or size)
        burst = min(burst, ring.capacity)
        lossy = ring.mode == L.MODE_LOSSY
        stride_w = ring.slot_stride // 8
        copy_w = np.zeros(burst * stride_w if lossy else stride_w, np.int64)
        copy_rw = copy_w.view()
        copy_rw.flags.writeable = False
        copy_rb = copy_w.view(np.uint8)
        copy_rb.flags.writeable = False
        recs = new_records(burst)
        verdict = np.zeros(burst, np.uint8)
        outbuf = np.zeros(OUT_BURSTS * burst * (PCAP_RECORD_HEADER + snap), np.uint8)
        st = np.zeros(STATE_WORDS, np.int64)
        want = -1 if count is None else count
        use_filter = flt is not None
        parse = bool(flt is not None and flt.needs_records)

        def call(cstate, until_ns, chunk_ns):
            return dump_chunk(ring.ctrl, ring.words, ring.slot_bytes, cstate, lossy, copy_w,
                              copy_rw, copy_rb, recs, verdict, prog, use_filter, parse, outbuf,
                              st, want, snap, burst, until_ns, chunk_ns, SPIN_POLLS)

        # compile (or load from the cache) before joining, so that a first run's compile does
        # not hold a lossless ring's producer back: a chunk of 0 ns returns before polling
        call(np.zeros(K.CSTATE_WORDS, np.int64), 0, 0)

        f, close_f, label = _open_output(out)
        file_bytes = 0
        why = None
        try:
            header = pcap_file_header(LINKTYPE_ETHERNET, nanosecond=True, snaplen=snap)
            try:
                _write_all(f, header)
                file_bytes += len(header)
            except BrokenPipeError:
                why = "broken_pipe"
            consumer = Consumer(ring)
            try:
                t0 = time.perf_counter()
                until = time.time_ns() + int(duration * 1e9) if duration is not None else 0
                if ready is not None:
                    ready(ring.info())
                idle = 0
                while why is None:
                    r = -1
                    try:
                        r = call(consumer.cstate, until, CHUNK_NS)
                        pos = int(st[D_POS])
                        if pos:
                            _write_all(f, outbuf[:pos])
                            st[D_POS] = 0
                            file_bytes += pos
                        if r == RET_COUNT:
                            why = "count"
                        elif r == RET_DEADLINE:
                            why = "duration"
                        elif stop is not None and stop():
                            why = "stop"
                        elif r == RET_IDLE:
                            idle += 1
                            if idle <= YIELDS:
                                os.sched_yield()
                            else:
                                time.sleep(min(IDLE_SLEEP * (idle - YIELDS), IDLE_SLEEP_MAX))
                        else:
                            idle = 0
                    except BrokenPipeError:
                        why = "broken_pipe"
                    except KeyboardInterrupt:
                        why = "interrupt"
                elapsed = time.perf_counter() - t0
                line = consumer.line
                lost = int(line["lost"])
            finally:
                consumer.close()                    # leave the ring (free our line)
            pos = int(st[D_POS])
            if pos and why != "broken_pipe":        # records of an interrupted chunk
                try:
                    _write_all(f, outbuf[:pos])
                    st[D_POS] = 0
                    file_bytes += pos
                except BrokenPipeError:
                    why = "broken_pipe"
        finally:
            if close_f:
                try:
                    f.close()
                except BrokenPipeError:
                    pass
            elif hasattr(f, "flush"):
                try:
                    f.flush()
                except BrokenPipeError:
                    pass
        return {
            "ring": ring.name,
            "ring_mode": ring.mode_name,
            "output": label,
            "filter": filter_expr,
            "stopped_by": why,
            "captured": int(st[D_CAPTURED]),
            "seen": int(st[D_SEEN]),
            "filtered_out": int(st[D_FILTERED]),
            "lost": lost,
            "rejoins": int(st[D_REJOINS]),
            "bytes": int(st[D_BYTES]),
            "file_bytes": file_bytes,
            "snaplen": snap,
            "elapsed_s": elapsed,
        }
    finally:
        ring.close()
