"""The ring's verbs as plain ``@njit`` functions over int64/uint8 arrays.

Fast path / slow path
---------------------
Producer: ``reserve(ctrl, words, pstate, n) -> k`` then write slots ``0..k-1`` with
``write_slot`` (or directly through ``slot_base``), then ``submit(ctrl, words, pstate, k, now)``
publishes the whole burst with one release store of the cursor (P1).  Consumer (lossless,
zero-copy): ``peek(ctrl, cstate, n) -> k``, read slots ``cursor .. cursor+k-1`` in place, then
``release(ctrl, cstate, k)`` (C2).  Consumer (lossy): ``receive(ctrl, words, cstate, out, n)``
copies a burst into private memory and delivers only untorn slots (L3).

Who may call: one producer per ring (``pstate`` is that producer's private state; a second
producer is refused at attach).  Each consumer only touches its own line (``cstate`` is its
private state).  Nothing here allocates, takes a lock or makes a system call; the only clock
reads are one per ``submit`` (the caller's) and, on slow paths, in ``reserve`` when the ring is
full and in ``peek`` every 1024 empty polls (heartbeat).

Overload behaviour
------------------
*lossless*: ``reserve`` never hands out a slot that an active consumer has not released; it
returns fewer than asked (possibly 0) when the ring is full.  The caller then drops and counts
(``count_dropped``) or spins on ``reserve`` again (policy ``full_policy`` in the header).  A
consumer that holds the producer back and has made no progress and no heartbeat for
``consumer_timeout_ns``, or whose pid is gone, is evicted (``evictions``); the evicted consumer
finds out in ``peek``/``release`` (they return -1) and may ``rejoin``, counting what it missed
in ``lost``.
*lossy*: the producer never waits and never reads consumer cursors.  A consumer that falls a
whole ring behind is lapped: ``receive`` sees it from the slot's sequence stamp, counts the
skipped sequence numbers in ``lost`` and resynchronises half a ring behind the producer (it
keeps the freshest half of the backlog and has half a ring of slack before the next lap).

All cursors are free-running int64 sequence numbers, masked on use: int64 never mixes with
uint64 here because Numba would promote the mix to float64.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from . import layout as L
from .atomics import (cas, fence_acquire, fence_release, fence_seq_cst, load_acquire,
                      load_relaxed, store_release, store_relaxed)
from .clock import now_ns, pid_alive

# Every verb is compiled without NRT reference counting: none of them allocates, and with NRT
# each call increfs and decrefs its array arguments on entry and exit.  Those are atomic
# read-modify-writes (lock add) on the arrays' meminfo, and a locked instruction waits for the
# store buffer to drain: in a producer whose slot stores are still missing in cache (a consumer
# on another core has just read those lines) a dozen of them per burst cost a quarter of the
# ring's throughput (tools/bench_ring.py).  The fast paths of reserve, submit and peek are kept
# small, their slow paths out of line, so that LLVM inlines them into the caller's loop.
_VERB = dict(cache=True, nogil=True, _nrt=False)

# --- private state words (process-local int64 arrays; never shared) ----------------------
PS_HEAD = 0          # producer's copy of its cursor (it is the only writer)
PS_CACHED_TAIL = 1   # slowest consumer cursor last seen (refreshed only when "full")
PS_MASK = 2
PS_CAPACITY = 3
PS_STRIDE_W = 4      # slot stride in int64 words
PS_MODE = 5
PS_MAX_CONSUMERS = 6
PS_TIMEOUT = 7       # consumer_timeout_ns
PS_SLOT_SIZE = 8
PS_FULL_CALLS = 9    # reserve calls that found the ring full since the last reap
PS_PUBLISHED = 10
PS_DROPPED = 11
PS_TRACK = 16        # per consumer k: [last cursor seen, CLOCK_REALTIME it last changed]
PSTATE_WORDS = PS_TRACK + 2 * L.MAX_CONSUMERS_LIMIT

CS_LINE = 0          # word index of this consumer's line in ctrl
CS_CURSOR = 1        # consumer's copy of its cursor (it is the only writer)
CS_CACHED_HEAD = 2   # producer cursor last seen (refreshed only when the cache runs dry)
CS_MASK = 3
CS_CAPACITY = 4
CS_STRIDE_W = 5
CS_MODE = 6
CS_SLOT_SIZE = 7
CS_EMPTY_POLLS = 8
CS_PID = 9
CSTATE_WORDS = 16

HEARTBEAT_EVERY = 1024   # heartbeat once per this many released slots or empty polls
REAP_EVERY = 16          # full reserve calls between clock reads for the eviction check


# --- producer -------------------------------------------------------------------------------
@njit(**_VERB)
def slot_base(pstate, j):
    """Word index (into ``words``) of the j-th slot of the burst being reserved."""
    return ((pstate[PS_HEAD] + j) & pstate[PS_MASK]) * pstate[PS_STRIDE_W]


@njit(**_VERB)
def _scan_tail(ctrl, pstate, head, n, now):
    """Slow path: the slowest active consumer's cursor, evicting dead or stuck ones.

    ``now`` is 0 when this call should not run the (clock-based) eviction check."""
    # J2: pairs with J1 in consumer_join.  Without a store-load barrier here, a consumer that
    # joined just now could be missed by this scan while it also misses our last publish.
    fence_seq_cst()
    tail = head
    cap = pstate[PS_CAPACITY]
    for k in range(pstate[PS_MAX_CONSUMERS]):
        line = L.C_BASE + k * L.C_WORDS
        if load_acquire(ctrl, line + L.C_STATE) != L.CONSUMER_ACTIVE:
            continue
        cur = load_acquire(ctrl, line + L.C_CURSOR)   # P2: pairs with C2 in release
        track = PS_TRACK + 2 * k
        if cur != pstate[track]:
            # progress: restart its timer (0 = "seen moving, time unknown": the next clocked
            # check starts the timer, so progress seen without a clock is never held against it)
            pstate[track] = cur
            pstate[track + 1] = now
        if now != 0 and cap - (head - cur) < n:
            # this consumer is what holds the producer back: is it dead or stuck?
            if pstate[track + 1] == 0:
                pstate[track + 1] = now
            last = max(pstate[track + 1], load_relaxed(ctrl, line + L.C_HEARTBEAT))
            pid = load_relaxed(ctrl, line + L.C_PID)
            if (not pid_alive(pid)) or now - last > pstate[PS_TIMEOUT]:
                # E1: pairs with E2 (peek/release load the state with acquire)
                if cas(ctrl, line + L.C_STATE, L.CONSUMER_ACTIVE, L.CONSUMER_EVICTED) == \
                        L.CONSUMER_ACTIVE:
                    store_relaxed(ctrl, L.PS_EVICTIONS, ctrl[L.PS_EVICTIONS] + 1)
                    pstate[track] = -1
                continue
        if cur < tail:
            tail = cur
    return tail


@njit(**_VERB)
def reserve(ctrl, words, pstate, n):
    """Reserve up to ``n`` slots for writing; returns how many (0..n).  Single producer only.

    Lossless: never more than the slowest active consumer has released; 0 when full (the
    caller drops and counts, or calls again).  Lossy: always ``n`` (at most the capacity); the
    reserved slots are stamped busy first so that a reader can never take a half-written slot
    for a valid one, which means their old contents are gone from that moment: reserve only
    what you are about to write."""
    cap = pstate[PS_CAPACITY]
    if n > cap:
        n = cap
    free = cap - (pstate[PS_HEAD] - pstate[PS_CACHED_TAIL])
    if free >= n and pstate[PS_MODE] != L.MODE_LOSSY:
        return n                                  # fast path: the cached tail is enough
    return _reserve_slow(ctrl, words, pstate, n)


@njit(**_VERB)
def _reserve_slow(ctrl, words, pstate, n):
    """Slow path of ``reserve`` (lossy stamping, or the cached tail was not enough)."""
    cap = pstate[PS_CAPACITY]
    head = pstate[PS_HEAD]
    if pstate[PS_MODE] == L.MODE_LOSSY:
        sw = pstate[PS_STRIDE_W]
        mask = pstate[PS_MASK]
        for j in range(n):
            # L1: pairs with L3 (receive); the fence keeps payload stores after the busy mark
            store_relaxed(words, ((head + j) & mask) * sw + L.S_SEQ, L.SEQ_BUSY)
        fence_release()
        return n
    free = cap - (head - pstate[PS_CACHED_TAIL])
    if free >= n:
        return n
    now = 0
    calls = pstate[PS_FULL_CALLS] + 1
    pstate[PS_FULL_CALLS] = calls
    if calls % REAP_EVERY == 0:
        now = now_ns()
    tail = _scan_tail(ctrl, pstate, head, n, now)
    pstate[PS_CACHED_TAIL] = tail
    free = cap - (head - tail)
    if free < n:
        store_relaxed(ctrl, L.PS_FULL_WAITS, ctrl[L.PS_FULL_WAITS] + 1)
        if free < 0:
            free = 0
        return free
    return n


@njit(**_VERB)
def write_slot(words, slot_bytes, pstate, j, frame, frame_len, wire_len, ts_ns, port, queue):
    """Copy ``frame[:frame_len]`` into the j-th reserved slot, clamped to the slot size (the
    truncation is flagged, the wire length kept)."""
    base = slot_base(pstate, j)
    size = pstate[PS_SLOT_SIZE]
    flags = 0
    cap_len = frame_len
    if cap_len > size:
        cap_len = size
        flags = L.SLOT_FLAG_TRUNCATED
    words[base + L.S_TS] = ts_ns
    words[base + L.S_LENS] = np.int64(wire_len) | (np.int64(cap_len) << 32)
    words[base + L.S_PORTQ] = np.int64(port) | (np.int64(queue) << 16) | (np.int64(flags) << 32)
    off = base * 8 + L.SLOT_HEADER_BYTES
    for b in range(cap_len):
        slot_bytes[off + b] = frame[b]
    return cap_len


@njit(**_VERB)
def submit(ctrl, words, pstate, k, now):
    """Publish the first ``k`` reserved slots (stamp each, then one release store of the
    cursor).  ``now`` is the producer's clock for its heartbeat.  Returns the new cursor."""
    head = pstate[PS_HEAD]
    _stamp(words, pstate, head, k)
    head += k
    pstate[PS_HEAD] = head
    pstate[PS_PUBLISHED] += k
    store_release(ctrl, L.P_CURSOR, head)          # P1: pairs with C1 (peek / receive)
    store_relaxed(ctrl, L.P_HEARTBEAT, now)
    store_relaxed(ctrl, L.PS_PUBLISHED, pstate[PS_PUBLISHED])
    return head


@njit(**_VERB)
def _stamp(words, pstate, head, k):
    """Write the sequence stamps of a burst (out of line: keeps ``submit`` inlinable)."""
    sw = pstate[PS_STRIDE_W]
    mask = pstate[PS_MASK]
    if pstate[PS_MODE] == L.MODE_LOSSY:
        for j in range(k):
            # L2: pairs with L3; the stamp goes last so a reader that sees it sees the slot
            store_release(words, ((head + j) & mask) * sw + L.S_SEQ, head + j)
    else:
        for j in range(k):
            words[((head + j) & mask) * sw + L.S_SEQ] = head + j   # covered by P1 below


@njit(**_VERB)
def count_dropped(ctrl, pstate, n):
    """Lossless with the drop policy: record ``n`` frames dropped because the ring was full."""
    pstate[PS_DROPPED] += n
    store_relaxed(ctrl, L.PS_DROPPED_FULL, pstate[PS_DROPPED])


@njit(**_VERB)
def producer_idle(ctrl, pstate, now):
    """Heartbeat while there is nothing to publish (so consumers can tell idle from dead)."""
    store_relaxed(ctrl, L.P_HEARTBEAT, now)


@njit(**_VERB)
def reserve_wait(ctrl, words, pstate, n, deadline_ns):
    """Spin on ``reserve`` until at least one slot is free or ``deadline_ns`` passes
    (CLOCK_REALTIME; 0 = no deadline).  The full-wait policy of a lossless ring."""
    k = reserve(ctrl, words, pstate, n)
    spins = 0
    while k == 0:
        spins += 1
        if deadline_ns != 0 and spins % 256 == 0 and now_ns() > deadline_ns:
            return 0
        k = reserve(ctrl, words, pstate, n)
    return k


# --- consumer -------------------------------------------------------------------------------
@njit(**_VERB)
def consumer_slot(cstate, j):
    """Slot index of the j-th slot of the burst last peeked."""
    return (cstate[CS_CURSOR] + j) & cstate[CS_MASK]


@njit(**_VERB)
def consumer_join(ctrl, cstate, pid, now):
    """Activate this consumer's (already claimed) line at the producer's current cursor.

    A new consumer starts with what is published after it joined.  The order matters: publish
    our line as active, full barrier (J1: pairs with J2 in the producer's scan), then read the
    producer cursor.  Either the producer's next scan sees us, or we see everything it
    published before that scan, so the start position can never be overwritten unseen."""
    line = cstate[CS_LINE]
    store_relaxed(ctrl, line + L.C_PID, pid)
    store_relaxed(ctrl, line + L.C_HEARTBEAT, now)
    store_relaxed(ctrl, line + L.C_JOINED, now)
    h0 = load_acquire(ctrl, L.P_CURSOR)
    store_release(ctrl, line + L.C_CURSOR, h0)
    store_release(ctrl, line + L.C_STATE, L.CONSUMER_ACTIVE)
    fence_seq_cst()                                # J1: pairs with J2 (_scan_tail)
    h1 = load_acquire(ctrl, L.P_CURSOR)
    store_release(ctrl, line + L.C_CURSOR, h1)
    cstate[CS_CURSOR] = h1
    cstate[CS_CACHED_HEAD] = h1
    return h1


@njit(**_VERB)
def rejoin(ctrl, cstate, now):
    """After an eviction: count what was missed and join again at the producer's cursor."""
    line = cstate[CS_LINE]
    old = cstate[CS_CURSOR]
    if cas(ctrl, line + L.C_STATE, L.CONSUMER_EVICTED, L.CONSUMER_CLAIMED) != \
            L.CONSUMER_EVICTED:
        return -1
    h = consumer_join(ctrl, cstate, cstate[CS_PID], now)
    missed = h - old if h > old else 0
    store_relaxed(ctrl, line + L.C_LOST, ctrl[line + L.C_LOST] + missed)
    store_relaxed(ctrl, line + L.C_REJOINS, ctrl[line + L.C_REJOINS] + 1)
    return missed


@njit(**_VERB)
def peek(ctrl, cstate, n):
    """How many slots (0..n) are ready to read in place, starting at ``cstate[CS_CURSOR]``;
    -1 if the producer evicted this consumer (call ``rejoin``).  Lossless rings only: in a
    lossy ring use ``receive``."""
    if cstate[CS_CACHED_HEAD] - cstate[CS_CURSOR] >= n:
        return n                                   # fast path: no shared line touched
    return _peek_slow(ctrl, cstate, n)


@njit(**_VERB)
def _peek_slow(ctrl, cstate, n):
    """Slow path of ``peek``: look at the producer's cursor (and our own state)."""
    line = cstate[CS_LINE]
    cur = cstate[CS_CURSOR]
    if load_acquire(ctrl, line + L.C_STATE) != L.CONSUMER_ACTIVE:   # E2: pairs with E1
        return -1
    head = load_acquire(ctrl, L.P_CURSOR)          # C1: pairs with P1 (submit)
    cstate[CS_CACHED_HEAD] = head
    avail = head - cur
    if avail <= 0:
        polls = cstate[CS_EMPTY_POLLS] + 1
        cstate[CS_EMPTY_POLLS] = polls
        if polls % HEARTBEAT_EVERY == 0:
            store_relaxed(ctrl, line + L.C_HEARTBEAT, now_ns())
        return 0
    return avail if avail < n else n


@njit(**_VERB)
def release(ctrl, cstate, k):
    """Hand ``k`` peeked slots back to the producer; returns k, or -1 if the producer evicted
    this consumer meanwhile (the slots read since may have been overwritten: discard them and
    ``rejoin``)."""
    line = cstate[CS_LINE]
    old = cstate[CS_CURSOR]
    cur = old + k
    # the in-place slot reads above must be done before we ask whether we were evicted
    # (free on x86; on weaker CPUs loads may otherwise complete after the state load)
    fence_acquire()
    if load_acquire(ctrl, line + L.C_STATE) != L.CONSUMER_ACTIVE:   # E2: pairs with E1
        # evicted: the burst is discarded, not delivered; the cursor stays before it so that
        # rejoin counts it in ``lost``
        return -1
    cstate[CS_CURSOR] = cur
    store_release(ctrl, line + L.C_CURSOR, cur)    # C2: pairs with P2 (_scan_tail)
    store_relaxed(ctrl, line + L.C_DELIVERED, ctrl[line + L.C_DELIVERED] + k)
    if (cur ^ old) >= HEARTBEAT_EVERY:             # crossed a multiple of 1024 (roughly)
        store_relaxed(ctrl, line + L.C_HEARTBEAT, now_ns())
    return k


@njit(**_VERB)
def receive(ctrl, words, cstate, out, n):
    """Lossy rings: copy up to ``n`` published slots into ``out`` (a private int64 array of
    ``n * stride_words``), delivering only slots that were not overwritten during the copy.

    Returns the number copied.  Lapping is counted in this consumer's ``lost`` and the cursor
    resynchronises half a ring behind the producer.  Works on lossless rings too (a copy
    instead of zero-copy), where it can never lap."""
    line = cstate[CS_LINE]
    cap = cstate[CS_CAPACITY]
    mask = cstate[CS_MASK]
    sw = cstate[CS_STRIDE_W]
    size_w = (cstate[CS_SLOT_SIZE] + 7) // 8
    cur = cstate[CS_CURSOR]
    head = load_acquire(ctrl, L.P_CURSOR)          # C1: pairs with P1 (submit)
    lost = 0
    resync = False
    if head - cur > cap:                           # a whole ring behind: certainly lapped
        lost = head - cap // 2 - cur
        cur = head - cap // 2
        resync = True
    k = 0
    lapped = False
    while k < n and cur < head:
        base = (cur & mask) * sw
        if load_acquire(words, base + L.S_SEQ) != cur:      # L3: pairs with L1/L2
            lapped = True
            break
        ob = k * sw
        lens = words[base + L.S_LENS]
        cap_len = (lens >> 32) & 0xFFFFFFFF
        payload_w = (min(cap_len, cstate[CS_SLOT_SIZE]) + 7) // 8
        if payload_w > size_w:
            payload_w = size_w
        out[ob + L.S_TS] = words[base + L.S_TS]
        out[ob + L.S_LENS] = lens
        out[ob + L.S_PORTQ] = words[base + L.S_PORTQ]
        for w in range(payload_w):
            out[ob + L.S_PAYLOAD + w] = words[base + L.S_PAYLOAD + w]
        fence_acquire()                            # L3: the copy completes before the re-check
        if load_relaxed(words, base + L.S_SEQ) != cur:
            lapped = True
            break
        out[ob + L.S_SEQ] = cur
        k += 1
        cur += 1
    if lapped:
        head = load_acquire(ctrl, L.P_CURSOR)
        target = head - cap // 2
        if target > cur:
            lost += target - cur
            cur = target
        resync = True
    if resync:                                     # once per call, however it was lapped
        store_relaxed(ctrl, line + L.C_REJOINS, ctrl[line + L.C_REJOINS] + 1)
    if lost != 0:
        store_relaxed(ctrl, line + L.C_LOST, ctrl[line + L.C_LOST] + lost)
    cstate[CS_CURSOR] = cur
    store_release(ctrl, line + L.C_CURSOR, cur)    # C2 (a lossless ring's producer reads it)
    if k > 0:
        store_relaxed(ctrl, line + L.C_DELIVERED, ctrl[line + L.C_DELIVERED] + k)
    else:
        polls = cstate[CS_EMPTY_POLLS] + 1
        cstate[CS_EMPTY_POLLS] = polls
        if polls % HEARTBEAT_EVERY == 0:
            store_relaxed(ctrl, line + L.C_HEARTBEAT, now_ns())
    return k


@njit(**_VERB)
def consumer_leave(ctrl, cstate):
    """Free this consumer's line (a clean exit; a crashed consumer is evicted instead)."""
    store_release(ctrl, cstate[CS_LINE] + L.C_STATE, L.CONSUMER_FREE)


@njit(**_VERB)
def _fresh_line(ctrl, line, pid):
    """Zero the counters of a line just claimed (the new owner starts from nothing)."""
    store_relaxed(ctrl, line + L.C_PID, 0)
    for w in range(2, L.C_WORDS):
        if w != L.C_STATE:
            store_relaxed(ctrl, line + w, 0)
    store_relaxed(ctrl, line + L.C_PID, pid)


@njit(**_VERB)
def claim_line(ctrl, max_consumers, pid):
    """Claim a free consumer line (or one left behind by a dead process); returns its index or
    -1 when all lines are taken by live consumers.  Setup path only.

    The pid goes in right after the claim, so a process that dies between claiming and
    joining leaves a line that the next claimer can see is dead and take over."""
    for k in range(max_consumers):
        line = L.C_BASE + k * L.C_WORDS
        if cas(ctrl, line + L.C_STATE, L.CONSUMER_FREE, L.CONSUMER_CLAIMED) == L.CONSUMER_FREE:
            _fresh_line(ctrl, line, pid)
            return k
    for k in range(max_consumers):
        line = L.C_BASE + k * L.C_WORDS
        state = load_acquire(ctrl, line + L.C_STATE)
        if state == L.CONSUMER_FREE:
            continue
        owner = load_relaxed(ctrl, line + L.C_PID)
        if state == L.CONSUMER_CLAIMED and owner == 0:
            continue                               # being claimed right now: pid not yet in
        if not pid_alive(owner):
            if cas(ctrl, line + L.C_STATE, state, L.CONSUMER_CLAIMED) == state:
                _fresh_line(ctrl, line, pid)
                return k
    return -1


@njit(**_VERB)
def attach_producer(ctrl, pid):
    """Become the ring's single producer; returns the cursor to resume from, or -1 if another
    live producer is attached.  A restarted producer resumes where the dead one stopped."""
    while True:
        old = load_acquire(ctrl, L.H_PRODUCER_PID)
        if old != 0 and pid_alive(old):
            return -1             # a live producer (this process included) is attached
        if cas(ctrl, L.H_PRODUCER_PID, old, pid) == old:
            return load_acquire(ctrl, L.P_CURSOR)


@njit(**_VERB)
def detach_producer(ctrl, pid):
    cas(ctrl, L.H_PRODUCER_PID, pid, 0)
