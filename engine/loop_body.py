"""The consumer poll loop -- the template ``engine.loop`` compiles for each (handler, filter).

This file is never imported as a loop by itself: ``engine.loop`` copies its source into a
generated module that first binds ``HANDLER`` (the user's ``@njit`` handler) and ``MATCH``
(the filter's specialised burst verb, ``parsers.filter_codegen``) as module globals, so Numba
compiles the three into one piece of machine code *and* caches it on disk (Numba cannot cache
a function that receives another compiled function as an argument; a global it can).

One iteration (``idle(do_work())``):

1. ``peek`` a burst of up to ``max_burst`` slots in place (lossless rings; ``receive`` copies
   them, lossy rings) -- the zero-copy path never writes the ring;
2. ``parse_slots`` them into ``recs``, run the filter (``verdict``), list the survivors'
   burst indices in ``sel[0:n]``;
3. one clock read ``now``, then ``HANDLER(recs, frames, bases, sel, n, now, state)``;
4. the latency producer-timestamp -> handler of each survivor into the histogram, the
   counters into the shared stats block (single writer: plain stores, once per burst);
5. ``release`` the burst.

Empty polls run the idle strategy: ``busy`` spins (the default on a pinned, isolated core),
``spin_yield`` spins ``spin`` polls then ``sched_yield()``s between polls, ``backoff`` spins
``spin`` polls then sleeps 1 us, 2 us, 4 us ... up to ``max_sleep_ns`` (the kernel adds its
timer slack, 50 us by default, to each sleep; the first packet after a quiet spell waits at
most one sleep).  Every 256 empty polls and after every burst the loop checks the shared stop
flag, the count limit, the deadline and its chunk end (it hands back to Python about every
``chunk_ns`` so signals are noticed); it returns a status code, the driver decides.

The handler's contract (see ``engine.loop``): return the number of packets it handled
(``n``); fewer counts the rest as handler errors, a negative value stops the loop.  If it
raises, the exception leaves the loop with the burst still peeked; ``lstate`` tells the
driver how many slots to release and how many packets to count as errors.
"""
# ruff: noqa: F821  -- HANDLER and MATCH are bound by the generated module
import numpy as np
from numba import njit

from engine import stats as S
from parsers.l2l4 import parse_slots
from shm import kernels as K
from shm import layout as L
from shm.clock import now_ns, sched_yield, sleep_ns

from engine.loop_codes import (IDLE_BUSY, IDLE_SPIN_YIELD, LS_PENDING,  # noqa: F401
                               LS_SELECTED, ST_CHUNK, ST_DEADLINE, ST_HANDLER_STOP, ST_LIMIT,
                               ST_STOP)


@njit(cache=True, nogil=True)
def _idle(kind, empty, spin, max_sleep_ns, sleep_state):
    """One empty poll's idle step; ``sleep_state[0]`` is the backoff's current sleep."""
    if kind == IDLE_BUSY or empty <= spin:
        return
    if kind == IDLE_SPIN_YIELD:
        sched_yield()
        return
    ns = sleep_state[0]
    sleep_ns(ns)
    ns *= 2
    sleep_state[0] = ns if ns < max_sleep_ns else max_sleep_ns


@njit(cache=True, nogil=True)
def _account(block, k, n, handled, t, frames_ts, sel, last_seq):
    """Counters and latency samples of one burst (single writer: plain stores)."""
    errors = 0
    if handled < 0:
        handled = n
    elif handled > n:
        handled = n
    errors = n - handled
    lat_min = np.int64(1) << 62
    lat_max = np.int64(0)
    lat_sum = np.int64(0)
    for j in range(n):
        d = t - frames_ts[sel[j]]
        if d < 0:            # a producer clock ahead of ours (or a replay's original times)
            d = 0
        S.record_one(block, d)
        lat_sum += d
        if d > lat_max:
            lat_max = d
        if d < lat_min:
            lat_min = d
    S.record_latencies(block, lat_min, lat_max, lat_sum, n)
    block[S.W_RECEIVED] += k
    block[S.W_FILTERED] += k - n
    block[S.W_HANDLED] += handled
    block[S.W_ERRORS] += errors
    block[S.W_BURSTS] += 1
    block[S.W_LAST_SEQ] = last_seq
    block[S.W_UPDATED] = t


@njit(cache=True, nogil=True)
def _select(verdict, k, sel, has_filter):
    n = 0
    for i in range(k):
        if not has_filter or verdict[i] != 0:
            sel[n] = i
            n += 1
    return n


@njit(cache=True, nogil=True)
def consume_lossless(ctrl, words, slot_bytes, cstate, stride, slot_size, capacity, recs,
                     verdict, bases, frames_ts, sel, state, block, lstate, ac_next, ac_out,
                     has_filter, max_burst, idle_kind, spin, max_sleep_ns, limit, deadline_ns,
                     chunk_ns):
    """Zero-copy loop over a lossless ring (see the module docstring); returns a status."""
    mask = capacity - 1
    stride_w = stride // 8
    t = now_ns()
    chunk_end = t + chunk_ns
    empty = 0
    sleep_state = lstate[2:3]                      # LS_SLEEP (a view: no allocation)
    sleep_state[0] = 1000
    while True:
        k = K.peek(ctrl, cstate, max_burst)
        if k < 0:                                  # evicted: count the gap, join again
            K.rejoin(ctrl, cstate, now_ns())
            block[S.W_LOST] = ctrl[cstate[K.CS_LINE] + L.C_LOST]
            continue
        if k == 0:
            empty += 1
            block[S.W_IDLE] += 1
            if (empty & 255) == 0:
                if S.stop_requested(block):
                    return ST_STOP
                t = now_ns()
                if deadline_ns > 0 and t >= deadline_ns:
                    return ST_DEADLINE
                if t >= chunk_end:
                    return ST_CHUNK
            _idle(idle_kind, empty, spin, max_sleep_ns, sleep_state)
            continue
        empty = 0
        sleep_state[0] = 1000
        if limit > 0 and block[S.W_RECEIVED] + k > limit:
            k = limit - block[S.W_RECEIVED]
        first = cstate[K.CS_CURSOR]
        parse_slots(slot_bytes, stride, slot_size, first, k, capacity, recs)
        if has_filter:
            MATCH(slot_bytes, stride, slot_size, first, k, capacity, recs, verdict,
                  ac_next, ac_out)
        for i in range(k):
            s = (first + i) & mask
            bases[i] = s * stride + L.SLOT_HEADER_BYTES
            frames_ts[i] = words[s * stride_w + L.S_TS]
        n = _select(verdict, k, sel, has_filter)
        lstate[LS_PENDING] = k
        lstate[LS_SELECTED] = n
        t = now_ns()
        handled = HANDLER(recs, slot_bytes, bases, sel, n, t, state)
        lstate[LS_PENDING] = 0
        _account(block, k, n, handled, t, frames_ts, sel, first + k - 1)
        if K.release(ctrl, cstate, k) < 0:         # evicted while handling: rejoin next poll
            pass
        if handled < 0:
            return ST_HANDLER_STOP
        if limit > 0 and block[S.W_RECEIVED] >= limit:
            return ST_LIMIT
        if S.stop_requested(block):
            return ST_STOP
        if t >= chunk_end:
            return ST_CHUNK
        if deadline_ns > 0 and t >= deadline_ns:
            return ST_DEADLINE


@njit(cache=True, nogil=True)
def consume_lossy(ctrl, words, copy_words, cstate, stride, slot_size, recs, verdict, bases,
                  frames_ts, sel, state, block, lstate, ac_next, ac_out, has_filter, max_burst,
                  idle_kind, spin, max_sleep_ns, limit, deadline_ns, chunk_ns):
    """Loop over a lossy ring: ``receive`` copies intact slots into ``copy_words`` (the
    handler sees that private copy; lapping is counted as lost, never delivered torn)."""
    copy_bytes = copy_words.view(np.uint8)
    stride_w = stride // 8
    line = cstate[K.CS_LINE]
    t = now_ns()
    chunk_end = t + chunk_ns
    empty = 0
    sleep_state = lstate[2:3]                      # LS_SLEEP
    sleep_state[0] = 1000
    while True:
        want = max_burst
        if limit > 0 and block[S.W_RECEIVED] + want > limit:
            want = limit - block[S.W_RECEIVED]
        k = K.receive(ctrl, words, cstate, copy_words, want)
        block[S.W_LOST] = ctrl[line + L.C_LOST]
        if k == 0:
            empty += 1
            block[S.W_IDLE] += 1
            if (empty & 255) == 0:
                if S.stop_requested(block):
                    return ST_STOP
                t = now_ns()
                if deadline_ns > 0 and t >= deadline_ns:
                    return ST_DEADLINE
                if t >= chunk_end:
                    return ST_CHUNK
            _idle(idle_kind, empty, spin, max_sleep_ns, sleep_state)
            continue
        empty = 0
        sleep_state[0] = 1000
        parse_slots(copy_bytes, stride, slot_size, 0, k, 0, recs)
        if has_filter:
            MATCH(copy_bytes, stride, slot_size, 0, k, 0, recs, verdict, ac_next, ac_out)
        for i in range(k):
            bases[i] = i * stride + L.SLOT_HEADER_BYTES
            frames_ts[i] = copy_words[i * stride_w + L.S_TS]
        n = _select(verdict, k, sel, has_filter)
        lstate[LS_PENDING] = 0                     # receive already consumed the slots
        lstate[LS_SELECTED] = n
        t = now_ns()
        handled = HANDLER(recs, copy_bytes, bases, sel, n, t, state)
        _account(block, k, n, handled, t, frames_ts, sel,
                 copy_words[(k - 1) * stride_w + L.S_SEQ])
        if handled < 0:
            return ST_HANDLER_STOP
        if limit > 0 and block[S.W_RECEIVED] >= limit:
            return ST_LIMIT
        if S.stop_requested(block):
            return ST_STOP
        if t >= chunk_end:
            return ST_CHUNK
        if deadline_ns > 0 and t >= deadline_ns:
            return ST_DEADLINE
