"""Replay a pcap/pcapng capture into a ring, as its producer (``hugering replay``).

The capture is read once, in bulk, by ``parsers.pcap.read_capture`` into an array of ring slot
records sized to the ring's slots (so a frame longer than the ring's ``slot_size`` is already
clamped and flagged ``SLOT_FLAG_TRUNCATED`` there, its wire length kept).  The hot loop
``replay_chunk`` then copies those records into reserved ring slots, 8 bytes at a time, a burst
per ``reserve``/``submit``, with no allocation; Python only sees it every ``CHUNK_NS`` (progress
bar, ``stop()``, Ctrl-C) or when a pacing gap is long enough to sleep.

Rate control (one clock read, CLOCK_REALTIME, per burst: the burst's timestamp, the producer
heartbeat and the pacer's clock):

* *speed X* -- packet ``i`` of a pass is due ``(ts[i] - ts[0]) / X`` after the first packet of
  that pass went out (each ``--loop`` pass restarts from its own first packet; a capture whose
  timestamps go backwards sends those packets at once).  All packets already due go out as one
  burst.  After a stall longer than ``MAX_LATE_NS`` (the process was descheduled, or a
  lossless + wait ring was full) the origin moves forward instead of sending the whole backlog
  at once, so the capture's gaps after the stall are kept (counted in ``pace_resyncs``).
* *pps N* -- the ``k``-th packet of the run is due ``k / N`` after the start, as the synthetic
  producer paces; at most ``max_backlog`` packets (10 ms worth) catch up at once.
* *topspeed* -- as fast as the ring takes them.

Gaps longer than ``SLEEP_NS`` are slept in Python (a slow replay must not burn a core); the
rest of a gap is spun on the clock.

Timestamps: a published slot's ``ts_ns`` is the publish time (CLOCK_REALTIME, the ring's time
base, so that latency measured downstream means something), or the capture's own timestamp
with ``original_timestamps``.

Overload behaviour (the ring's, decided at its creation, as in ``engine.producers.synthetic``):
*lossless + drop* publishes what fits and counts the rest with ``kernels.count_dropped`` (the
packets are skipped: the replay does not slow down); *lossless + wait* spins on ``reserve``
until the consumers make room (nothing is lost, the pacer resynchronises afterwards); *lossy*
never waits and never drops (slow consumers are lapped and count it themselves).

Memory: the whole capture is held as slot records, ``slot_stride`` bytes per packet (2112 B
with the default 2048-byte slots: about 2 GiB for a million packets).

Single producer only: attaching fails while another live process is the ring's producer.
"""
from __future__ import annotations

import logging
import math
import os
import time

import numpy as np
from numba import njit

from shm import kernels as K
from shm import layout as L
from shm.clock import now_ns

log = logging.getLogger("hugering.replay")

# private state words of the replay loop (process-local, never shared)
ST_IDX = 0           # next packet of the capture (index into its slot records)
ST_PASSES = 1        # loop passes completed
ST_SENT = 2          # packets published
ST_DROPPED = 3       # packets dropped (ring full, lossless + drop)
ST_TRUNC = 4         # packets published truncated to the ring's slot size
ST_BYTES = 5         # wire bytes published
ST_CAP_BYTES = 6     # captured bytes published
ST_BURSTS = 7        # bursts submitted
ST_FULL_SPINS = 8    # reserve calls that found the ring full while waiting (lossless + wait)
ST_T0 = 9            # pacer origin: run start (pps) or first packet of this pass (speed)
ST_PACE_SEQ = 10     # pps: packet count that was due at ST_T0
ST_SLEEP_NS = 11     # RET_SLEEP: how long until the next packet is due
ST_HANDLED = 12      # packets taken from the capture (sent + dropped), for the pps pacer
ST_RESYNCS = 13      # times the pacer gave up catching up after a stall
ST_ANCHORED = 14     # speed: ST_T0 is set for the current pass
STATE_WORDS = 16

PACE_TOP, PACE_PPS, PACE_SPEED = 0, 1, 2
RET_DONE, RET_CHUNK, RET_SLEEP = 0, 1, 2
SLEEP_NS = 500_000       # pacing gaps longer than this are slept in Python instead of spun
SLEEP_MARGIN_NS = 200_000  # ... minus this much (Python's sleep overshoots), the rest spun
MAX_LATE_NS = 10_000_000   # speed pacing: later than this, move the origin instead of bursting
CHUNK_NS = 50_000_000    # hand back to Python this often (progress, stop(), Ctrl-C)
DEFAULT_BURST = 32


class ReplayConfigError(ValueError):
    """A bad replay setting; ``key`` names it."""

    def __init__(self, key: str, message: str):
        super().__init__(f"{key}: {message}")
        self.key = key


# --- the hot loop -----------------------------------------------------------------------------
@njit(cache=True, nogil=True)
def replay_chunk(ctrl, words, pstate, src, src_sw, due, npkts, st, passes, pace, pkts_per_ns,
                 max_backlog, burst, wait_full, keep_ts, chunk_ns):
    """Publish capture records ``src`` (int64 words, ``src_sw`` words per record, ``npkts``
    records) from ``st[ST_IDX]`` on, for ``chunk_ns`` at most; returns RET_*.

    ``passes`` > 0 stops after that many passes over the capture (0: forever).  ``pace`` is
    PACE_TOP, PACE_PPS (``pkts_per_ns``) or PACE_SPEED (``due[i]``: ns from the pass's first
    packet to packet i, already divided by the speed).  ``wait_full`` is the lossless + wait
    policy; ``keep_ts`` keeps the capture's timestamps instead of the publish time.  Allocates
    nothing; one clock read per burst (plus one per spin while pacing or waiting).  Single
    producer only."""
    size = pstate[K.PS_SLOT_SIZE]
    now = now_ns()
    chunk_end = now + chunk_ns
    while True:
        if npkts == 0 or (passes > 0 and st[ST_PASSES] >= passes):
            return RET_DONE
        if now >= chunk_end:
            return RET_CHUNK
        idx = st[ST_IDX]
        n = npkts - idx
        if n > burst:
            n = burst
        if pace == PACE_SPEED:
            if st[ST_ANCHORED] == 0:
                st[ST_T0] = now                     # this pass starts with this packet
                st[ST_ANCHORED] = 1
            el = now - st[ST_T0]
            if due[idx] > el:
                # slow path: not due yet.  Spin on the clock, or let Python sleep a long gap
                wait = due[idx] - el
                if wait > SLEEP_NS:
                    st[ST_SLEEP_NS] = wait
                    return RET_SLEEP
                now = now_ns()
                continue
            if el - due[idx] > MAX_LATE_NS:
                # a stall: restart the clock at this packet so that the gaps after it are kept
                # (sending the backlog at once would squash them all into one burst)
                st[ST_T0] += el - due[idx]
                el = due[idx]
                st[ST_RESYNCS] += 1
            m = 1
            while m < n and due[idx + m] <= el:
                m += 1
            n = m                                   # every packet already due, as one burst
        elif pace == PACE_PPS:
            done = st[ST_HANDLED] - st[ST_PACE_SEQ]
            ready = np.int64((now - st[ST_T0]) * pkts_per_ns) - done
            if ready <= 0:
                wait = np.int64((done + 1) / pkts_per_ns) - (now - st[ST_T0])
                if wait > SLEEP_NS:
                    st[ST_SLEEP_NS] = wait
                    return RET_SLEEP
                now = now_ns()
                continue
            if ready > max_backlog:
                # far behind (descheduled, or held back by a full ring): forget the excess
                # instead of flooding the consumers with it; the average rate dips, honestly
                st[ST_PACE_SEQ] -= ready - max_backlog
                ready = max_backlog
                st[ST_RESYNCS] += 1
            if ready < n:
                n = ready
        k = K.reserve(ctrl, words, pstate, n)
        if k < n:
            if wait_full:
                if k == 0:
                    # lossless + wait and full: spin until a consumer releases (or is evicted
                    # by reserve's reaper); the clock read keeps the chunk deadline alive
                    st[ST_FULL_SPINS] += 1
                    now = now_ns()
                    continue
                n = k                               # publish what fits, the rest next burst
            else:
                K.count_dropped(ctrl, pstate, n - k)   # lossless + drop: count, move on
                st[ST_DROPPED] += n - k
        wire = 0
        capb = 0
        trunc = 0
        for j in range(k):
            sb = (idx + j) * src_sw
            db = K.slot_base(pstate, j)
            lens = src[sb + L.S_LENS]
            cap = (lens >> 32) & 0xFFFFFFFF
            if cap > size:                          # read_capture clamped it; never trust it
                cap = size
                lens = (lens & 0xFFFFFFFF) | (cap << 32)
            # whole words: up to 7 bytes past the frame land in the slot's own padding
            # (the stride is 32 + slot_size rounded up to 64)
            for w in range((cap + 7) >> 3):
                words[db + L.S_PAYLOAD + w] = src[sb + L.S_PAYLOAD + w]
            words[db + L.S_TS] = src[sb + L.S_TS] if keep_ts else now
            words[db + L.S_LENS] = lens
            pq = src[sb + L.S_PORTQ]
            words[db + L.S_PORTQ] = pq
            if (pq >> 32) & L.SLOT_FLAG_TRUNCATED:
                trunc += 1
            wire += lens & 0xFFFFFFFF
            capb += cap
        if k > 0:
            K.submit(ctrl, words, pstate, k, now)
            st[ST_SENT] += k
            st[ST_TRUNC] += trunc
            st[ST_BYTES] += wire
            st[ST_CAP_BYTES] += capb
            st[ST_BURSTS] += 1
        st[ST_HANDLED] += n
        idx += n
        if idx >= npkts:                            # end of a pass
            idx = 0
            st[ST_PASSES] += 1
            st[ST_ANCHORED] = 0
        st[ST_IDX] = idx
        now = now_ns()


# --- setup and the Python driver ---------------------------------------------------------------
def _check_rate(pps, speed, topspeed):
    """Exactly one of pps / speed / topspeed (speed 1 when none); returns (pace, value)."""
    given = [k for k, v in (("pps", pps), ("speed", speed)) if v is not None]
    if topspeed:
        given.append("topspeed")
    if len(given) > 1:
        raise ReplayConfigError(given[1], f"give one of pps, speed and topspeed, not "
                                          f"{' and '.join(given)}")
    if topspeed:
        return PACE_TOP, None
    if pps is not None:
        try:
            v = float(pps)
        except (TypeError, ValueError):
            v = float("nan")
        if not (math.isfinite(v) and 0 < v < 1e10):
            raise ReplayConfigError("pps", f"expected packets per second > 0, got {pps!r}")
        return PACE_PPS, v
    v = 1.0 if speed is None else speed
    try:
        v = float(v)
    except (TypeError, ValueError):
        v = float("nan")
    if not (math.isfinite(v) and 0 < v < 1e9):
        raise ReplayConfigError("speed", f"expected a factor > 0 (1 = the capture's own "
                                         f"timing), got {speed!r}")
    return PACE_SPEED, v


def _due_offsets(ts: np.ndarray, speed: float) -> np.ndarray:
    """ns from the first packet to each packet, divided by ``speed`` (int64)."""
    if len(ts) == 0:
        return np.zeros(1, np.int64)
    rel = (ts - ts[0]).astype(np.float64) / speed
    return np.clip(rel, -9e18, 9e18).astype(np.int64)


def replay(ring_name: str, path, *, hugetlbfs: str | None = None, pps: float | None = None,
           speed: float | None = None, topspeed: bool = False, loop: int = 1,
           original_timestamps: bool = False, progress=None, stop=None,
           burst: int = DEFAULT_BURST) -> dict:
    """Replay the capture at ``path`` into the ring ``ring_name`` as its producer; returns the
    report (see the keys at the end of this function).

    Exactly one of ``pps`` (packets per second), ``speed`` (a factor on the capture's own
    timing; the default, 1.0) and ``topspeed``.  ``loop`` passes over the capture (0: until
    stopped).  ``progress(snapshot)`` is called about every 50 ms with a dict (``sent``,
    ``dropped``, ``loops``, ``total``, ``elapsed_s``); ``stop()`` returning true ends the replay
    at the next such point, as Ctrl-C does (``stopped_by`` says which).

    Raises ``ReplayConfigError`` (a bad setting, ``key`` names it), ``parsers.pcap.PcapError``
    (the file cannot be read at all, or is not Ethernet) and ``shm.RingError`` (no such ring,
    or it already has a live producer).  A capture damaged part way is replayed up to the
    damage, with a warning; the report carries ``capture_error`` and its byte offset."""
    from parsers.pcap import LINKTYPE_ETHERNET, PcapError, read_capture
    from shm.backing import RingError
    from shm.clock import pid_alive
    from shm.ring import Producer, Ring

    pace, rate = _check_rate(pps, speed, topspeed)
    if not isinstance(loop, int) or isinstance(loop, bool) or loop < 0:
        raise ReplayConfigError("loop", f"expected a number of passes >= 0 (0: until stopped), "
                                        f"got {loop!r}")
    if not isinstance(burst, int) or not 1 <= burst <= 4096:
        raise ReplayConfigError("burst", f"expected 1..4096, got {burst!r}")

    ring = Ring.open(ring_name, hugetlbfs, writable_slots=True)
    try:
        # fail fast, before reading a large file; Producer() below is the authoritative check
        owner = int(ring.header["producer_pid"])
        if owner and owner != os.getpid() and pid_alive(owner):
            raise RingError(f"ring {ring.name!r} already has a live producer (pid {owner}); "
                            f"one producer per ring")
        cap = read_capture(path, slot_size=ring.slot_size)
        bad = sorted({t for t in cap.linktypes if t != LINKTYPE_ETHERNET})
        if bad:
            raise PcapError(f"{os.fspath(path)}: link type {bad[0]} is not Ethernet "
                            f"({LINKTYPE_ETHERNET}); a ring carries Ethernet frames", 0)
        if cap.error:
            if cap.count == 0:                 # damaged before its first packet: an error
                raise PcapError(cap.error, cap.error_offset or 0, cap)
            log.warning("%s; replaying the %d packets before it", cap.error, cap.count)
        return _run(ring, cap, os.fspath(path), pace, rate, loop, original_timestamps, progress,
                    stop, min(burst, ring.capacity), Producer)
    finally:
        ring.close()


def _run(ring, cap, path, pace, rate, loop, keep_ts, progress, stop, burst, Producer) -> dict:
    slots = np.ascontiguousarray(cap.slots)
    npkts = int(cap.count)
    src = slots.view(np.int64) if npkts else np.zeros(ring.slot_stride // 8, np.int64)
    src_sw = slots.dtype.itemsize // 8
    due = _due_offsets(slots["ts_ns"], rate) if pace == PACE_SPEED else np.zeros(1, np.int64)
    pkts_per_ns = rate / 1e9 if pace == PACE_PPS else 0.0
    max_backlog = max(4 * burst, int(rate / 100)) if pace == PACE_PPS else 0
    wait_full = bool(ring.mode == L.MODE_LOSSLESS and ring.full_policy == L.FULL_WAIT)
    st = np.zeros(STATE_WORDS, np.int64)

    def call(pstate, chunk_ns):
        return replay_chunk(ring.ctrl, ring.words, pstate, src, src_sw, due, npkts, st, loop,
                            pace, pkts_per_ns, max_backlog, burst, wait_full, keep_ts, chunk_ns)

    # compile (or load from the cache) before attaching: a chunk of 0 ns returns at once
    call(np.zeros(K.PSTATE_WORDS, np.int64), 0)
    producer = Producer(ring)
    try:
        full_waits0 = int(ring.ctrl[L.PS_FULL_WAITS])
        total = npkts * loop if loop else None
        t0 = time.perf_counter()
        st[ST_T0] = time.time_ns()
        why = "done"
        last_report = 0.0
        try:
            while True:
                r = call(producer.pstate, CHUNK_NS)
                if r == RET_DONE:
                    break
                if r == RET_SLEEP:
                    # a long gap: sleep most of it, 50 ms at most at a time (stop(), Ctrl-C)
                    K.producer_idle(ring.ctrl, producer.pstate, time.time_ns())
                    time.sleep(min(0.05, max(0.0, (int(st[ST_SLEEP_NS]) - SLEEP_MARGIN_NS)
                                             / 1e9)))
                t = time.perf_counter()
                if progress is not None and (r == RET_CHUNK or t - last_report >= 0.05):
                    last_report = t
                    progress({"sent": int(st[ST_SENT]), "dropped": int(st[ST_DROPPED]),
                              "handled": int(st[ST_HANDLED]), "loops": int(st[ST_PASSES]),
                              "total": total, "elapsed_s": t - t0})
                if stop is not None and stop():
                    why = "stop"
                    break
        except KeyboardInterrupt:
            why = "interrupt"
        elapsed = time.perf_counter() - t0
        info = ring.info()
    finally:
        producer.close()
    sent = int(st[ST_SENT])
    speed_or_pps = {"pacing": ("topspeed", "pps", "speed")[pace],
                    "speed": rate if pace == PACE_SPEED else None,
                    "target_pps": rate if pace == PACE_PPS else None}
    return {
        "ring": ring.name,
        "file": path,
        "format": cap.format,
        "file_packets": npkts,
        "capture_error": cap.error,
        "capture_error_offset": cap.error_offset,
        **speed_or_pps,
        "loop": loop,
        "original_timestamps": bool(keep_ts),
        "stopped_by": why,
        "sent": sent,
        "dropped": int(st[ST_DROPPED]),
        "truncated": int(st[ST_TRUNC]),
        "loops": int(st[ST_PASSES]),
        "bytes": int(st[ST_BYTES]),
        "captured_bytes": int(st[ST_CAP_BYTES]),
        "bursts": int(st[ST_BURSTS]),
        "full_waits": info["producer"]["full_waits"] - full_waits0,
        "pace_resyncs": int(st[ST_RESYNCS]),
        "elapsed_s": elapsed,
        "achieved_pps": sent / elapsed if elapsed > 0 else 0.0,
        "achieved_mbps": int(st[ST_BYTES]) * 8 / elapsed / 1e6 if elapsed > 0 else 0.0,
        "ring_mode": info["mode"],
        "full_policy": info["full_policy"],
        "slot_size": ring.slot_size,
        "producer": {k: info["producer"][k] for k in ("published", "dropped_full", "full_waits",
                                          "evictions", "nic_drops")},
    }
